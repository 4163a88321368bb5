"""`{{ text|code_spans }}`: help text written with `backticks` (as in the docs) shown with <code>, escaped first."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_BACKTICKS = re.compile(r"`([^`]+)`")


@register.filter
def code_spans(text: str) -> SafeString:
    return mark_safe(_BACKTICKS.sub(r"<code>\1</code>", escape(text)))  # noqa: S308 - escaped just before
