"""Highlights (character spans of a transcript's reasoning) painted on the text, and span agreement.

Painting: the reasoning is cut at every span boundary; each piece is escaped and wrapped in one `<mark>` per
auditor whose span covers it (nested, one colour per auditor), so overlapping highlights of several auditors
stay visible. The text is model output: it only ever passes through `conditional_escape`/`format_html`.

Agreement: character-overlap F1 between two auditors, pooled over the items both labelled,
F1 = 2·|A ∩ B| / (|A| + |B|) where A and B are the sets of (item, character) an auditor highlighted — per
category (characters highlighted with that category) and overall (a character agrees only under the same
category). An auditor who labelled an item but highlighted nothing there contributes an empty set.
Krippendorff's unitized α (α_U) is not computed: no maintained implementation exists on PyPI (docs/annotation.md).
The page reads it as the report `span-agreement` (judging.reports), recomputed by a worker when a label or
highlight of the queue changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

from django.db.models import Count, Max
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import AnnotationQueue, Highlight, Label
from ..reports import labels_fingerprint, report

COLOURS = 8  # auditor colour classes span-0 … span-7 in static/css/spans.css


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    auditor: str
    category: str


def paint(text: str, spans: list[Span], colour_of: dict[str, int]) -> SafeString:
    """The text, escaped, with each auditor's spans marked in their colour (offsets clipped to the text)."""
    spans = [s for s in spans if min(s.end, len(text)) > max(s.start, 0)]
    cuts = sorted({0, len(text)} | {max(s.start, 0) for s in spans} | {min(s.end, len(text)) for s in spans})
    pieces = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        piece = conditional_escape(text[start:end])
        covering = sorted((s for s in spans if s.start <= start and s.end >= end),
                          key=lambda s: (colour_of[s.auditor], s.category))
        for span in reversed(covering):
            piece = format_html('<mark class="span span-{}" title="{}: {}">{}</mark>',
                                colour_of[span.auditor] % COLOURS, span.auditor, span.category, piece)
        pieces.append(piece)
    return format_html_join("", "{}", ((piece,) for piece in pieces))


def legend(colour_of: dict[str, int]) -> SafeString:
    return format_html_join(
        " ", '<mark class="span span-{}">{}</mark>',
        ((index % COLOURS, auditor) for auditor, index in sorted(colour_of.items(), key=lambda kv: kv[1])),
    )


def label_spans(labels: list[Label]) -> list[Span]:
    """The spans of labels fetched with `highlights__category` and `auditor` (no further queries)."""
    return [
        Span(h.start, h.end, label.auditor.username, h.category.key)
        for label in labels for h in label.highlights.all()
    ]


def colours(spans: list[Span]) -> dict[str, int]:
    """One colour index per auditor, by name, so a person keeps their colour across pages of one queue."""
    return {auditor: i for i, auditor in enumerate(sorted({s.auditor for s in spans}))}


# ---- agreement ---------------------------------------------------------------------------------------------


def _characters(spans) -> set[tuple[str, int]]:
    return {(category, i) for category, start, end in spans for i in range(start, end)}


def f1(a: set, b: set) -> float | None:
    """Dice/F1 overlap of two sets; None when both are empty (nothing to agree on)."""
    if not a and not b:
        return None
    return 2 * len(a & b) / (len(a) + len(b))


def queue_span_agreement(queue: AnnotationQueue) -> dict:
    """Character-overlap F1 for every pair of auditors of the queue, overall and per category."""
    labelled: dict[str, set] = defaultdict(set)  # auditor → items they labelled
    for item_id, auditor in Label.objects.filter(item__queue=queue).values_list("item_id", "auditor__username"):
        labelled[auditor].add(item_id)
    spans: dict[tuple[str, int], list] = defaultdict(list)  # (auditor, item) → [(category, start, end)]
    for item_id, auditor, category, start, end in Highlight.objects.filter(label__item__queue=queue).values_list(
        "label__item_id", "label__auditor__username", "category__key", "start", "end"
    ):
        spans[(auditor, item_id)].append((category, start, end))
    categories = sorted({c for rows in spans.values() for c, _, _ in rows})
    pairs = []
    for a, b in combinations(sorted(labelled), 2):
        common = labelled[a] & labelled[b]
        chars_a = {(item, *c) for item in common for c in _characters(spans[(a, item)])}
        chars_b = {(item, *c) for item in common for c in _characters(spans[(b, item)])}
        pairs.append({
            "a": a, "b": b, "items": len(common), "chars_a": len(chars_a), "chars_b": len(chars_b),
            "f1": f1(chars_a, chars_b),
            "per_category": {
                category: f1({x for x in chars_a if x[1] == category}, {x for x in chars_b if x[1] == category})
                for category in categories
            },
        })
    return {"pairs": pairs, "categories": categories, "n_highlights": sum(len(v) for v in spans.values())}


def span_fingerprint(queue: int) -> tuple:
    """The queue's labels and highlights (count, newest id, latest label edit: a highlight is saved with its
    label)."""
    highlights = Highlight.objects.filter(label__item__queue=queue).aggregate(n=Count("pk"), last_id=Max("pk"))
    return queue, labels_fingerprint(Label.objects.filter(item__queue=queue)), tuple(highlights.values())


@report("span-agreement", fingerprint=span_fingerprint, warm="queue")
def span_agreement(queue: int) -> dict:
    return queue_span_agreement(AnnotationQueue.objects.get(pk=queue))
