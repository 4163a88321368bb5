"""`{{ key|category_name:names }}`: a category's name for a person to read, from a key → name mapping that the
view builds once per page (judging.annotation.taxonomy.category_names); a key the mapping does not know (a
category of an older taxonomy version, "none") shows as it is."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def category_name(key: object, names: dict[str, str] | None) -> object:
    return (names or {}).get(key, key)

