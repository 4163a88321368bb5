"""`{% painted_reasoning transcript %}`: the reasoning with the auditors' highlights painted on it.

For researchers only (an auditor must not see another auditor's spans); anyone else gets nothing. With
`item=`, only that queue item's labels (the adjudication page); without, every label of the transcript."""

from __future__ import annotations

from django import template

from transcripts.access import is_researcher

from ..annotation.spans import colours, highlight_spans, legend, paint
from ..models import Highlight, QueueItem

register = template.Library()


@register.inclusion_tag("judging/validity_painted_reasoning.html", takes_context=True)
def painted_reasoning(context, transcript, item: QueueItem | None = None) -> dict:
    request = context.get("request")
    if request is None or not is_researcher(request.user):
        return {"shown": False}
    highlights = (Highlight.objects.filter(label__item=item) if item is not None
                  else Highlight.objects.filter(label__item__transcript=transcript))
    spans = highlight_spans(highlights)
    colour_of = colours(spans)
    return {
        "shown": True,
        "spans": spans,
        "painted": paint(transcript.reasoning, spans, colour_of),
        "legend": legend(colour_of),
    }
