"""Highlights (character spans of a transcript's reasoning) painted on the text, and span agreement.

Painting: the reasoning is cut where the set of auditors' spans covering it changes; each piece is escaped
and wrapped in one `<mark>` per auditor covering it (nested, one colour per auditor, titled with that
auditor's categories there), so overlapping highlights of several auditors stay visible while one auditor's
overlapping spans add no markup. The text is model output: it only ever passes through
`conditional_escape`/`format_html`.

Agreement: character-overlap F1 between two auditors, pooled over the items both labelled,
F1 = 2·|A ∩ B| / (|A| + |B|) where A and B are the sets of (item, character) an auditor highlighted — per
category (characters highlighted with that category) and overall (a character agrees only under the same
category). An auditor who labelled an item but highlighted nothing there contributes an empty set. The sets
are kept as merged intervals, never expanded to characters.
Krippendorff's unitized α (α_U) is not computed: no maintained implementation exists on PyPI (docs/annotation.md).
The page reads it as the report `span-agreement` (judging.reports), recomputed by a worker when a label or
highlight of the queue changes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from django.db.models import Count, Max, QuerySet
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
    """The text, escaped, with each auditor's spans marked in their colour (offsets clipped to the text).

    One sweep over the sorted span boundaries: a piece of text runs until the set of (auditor, categories)
    covering it changes, and gets one `<mark>` per auditor covering it (titled with that auditor's
    categories there), however many of their spans overlap. So the markup grows with the text and the number
    of boundaries, not with their product (1,000 overlapping spans once made a 30 MiB page)."""
    changes: dict[int, Counter] = defaultdict(Counter)  # offset → (auditor, category) → spans opening − closing
    for s in spans:
        start, end = max(s.start, 0), min(s.end, len(text))
        if end > start:
            changes[start][(s.auditor, s.category)] += 1
            changes[end][(s.auditor, s.category)] -= 1
    depth: Counter = Counter()
    pieces, at, covering = [], 0, ()
    for cut in sorted(changes):
        depth.update(changes[cut])
        now = _covering(depth, colour_of)
        if now != covering:
            if cut > at:
                pieces.append(_marked(text[at:cut], covering, colour_of))
            at, covering = cut, now
    pieces.append(conditional_escape(text[at:]))  # past the last boundary nothing covers the text
    return format_html_join("", "{}", ((piece,) for piece in pieces))


def _covering(depth: Counter, colour_of: dict[str, int]) -> tuple[tuple[str, str], ...]:
    """(auditor, their categories joined) for each auditor with an open span, in colour order."""
    categories: dict[str, list[str]] = defaultdict(list)
    for (auditor, category), open_spans in sorted(depth.items()):
        if open_spans > 0:
            categories[auditor].append(category)
    return tuple(sorted(((auditor, ", ".join(keys)) for auditor, keys in categories.items()),
                        key=lambda covered: colour_of[covered[0]]))


def _marked(piece: str, covering: tuple[tuple[str, str], ...], colour_of: dict[str, int]) -> SafeString:
    html = conditional_escape(piece)
    for auditor, categories in reversed(covering):
        html = format_html('<mark class="span span-{}" title="{}: {}">{}</mark>',
                           colour_of[auditor] % COLOURS, auditor, categories, html)
    return html


def legend(colour_of: dict[str, int]) -> SafeString:
    return format_html_join(
        " ", '<mark class="span span-{}">{}</mark>',
        ((index % COLOURS, auditor) for auditor, index in sorted(colour_of.items(), key=lambda kv: kv[1])),
    )


def highlight_spans(highlights: QuerySet[Highlight]) -> list[Span]:
    """The highlights as spans, read as plain rows in one query (a label may carry many)."""
    return [Span(*row) for row in highlights.values_list("start", "end", "label__auditor__username", "category__key")]


def passages(highlights: QuerySet[Highlight]) -> dict[int, list[tuple[str, int, int]]]:
    """Each label's highlights, with overlapping ones of one category merged: label id → [(category, start,
    end)] by start. A list to read, as long as the distinct passages, however many spans repeat them."""
    spans: dict[tuple[int, str], list] = defaultdict(list)
    for label_id, category, start, end in highlights.values_list("label_id", "category__key", "start", "end"):
        spans[(label_id, category)].append((start, end))
    of_label: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for (label_id, category), intervals in spans.items():
        of_label[label_id].extend((category, start, end) for start, end in merged(intervals))
    return {label_id: sorted(rows, key=lambda row: (row[1], row[2], row[0])) for label_id, rows in of_label.items()}


def colours(spans: list[Span]) -> dict[str, int]:
    """One colour index per auditor, by name, so a person keeps their colour across pages of one queue."""
    return {auditor: i for i, auditor in enumerate(sorted({s.auditor for s in spans}))}


# ---- agreement ---------------------------------------------------------------------------------------------
# Sets of characters as sorted lists of disjoint intervals: sizes and intersections cost the number of spans,
# not the number of characters they cover.

Intervals = list[tuple[int, int]]


def merged(intervals: Iterable[tuple[int, int]]) -> Intervals:
    """The union of half-open [start, end) intervals, as sorted, disjoint intervals."""
    union: Intervals = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if union and start <= union[-1][1]:
            union[-1] = (union[-1][0], max(union[-1][1], end))
        else:
            union.append((start, end))
    return union


def size(intervals: Intervals) -> int:
    return sum(end - start for start, end in intervals)


def overlap(a: Intervals, b: Intervals) -> int:
    """How many characters two merged interval lists share (one walk along both)."""
    i = j = shared = 0
    while i < len(a) and j < len(b):
        shared += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return shared


def f1(shared: int, size_a: int, size_b: int) -> float | None:
    """Dice/F1 overlap of two sets from their sizes and their intersection's; None when both are empty
    (nothing to agree on)."""
    if not size_a and not size_b:
        return None
    return 2 * shared / (size_a + size_b)


def queue_span_agreement(queue: AnnotationQueue) -> dict:
    """Character-overlap F1 for every pair of auditors of the queue, overall and per category."""
    labelled: dict[str, set] = defaultdict(set)  # auditor → items they labelled
    for item_id, auditor in Label.objects.filter(item__queue=queue).values_list("item_id", "auditor__username"):
        labelled[auditor].add(item_id)
    raw: dict[tuple[str, int, str], list] = defaultdict(list)  # (auditor, item, category) → [(start, end)]
    for item_id, auditor, category, start, end in Highlight.objects.filter(label__item__queue=queue).values_list(
        "label__item_id", "label__auditor__username", "category__key", "start", "end"
    ):
        raw[(auditor, item_id, category)].append((start, end))
    marked = {key: merged(intervals) for key, intervals in raw.items()}
    categories = sorted({category for _, _, category in marked})
    pairs = []
    for a, b in combinations(sorted(labelled), 2):
        common = labelled[a] & labelled[b]
        sizes = {}  # category → (|A|, |B|, |A ∩ B|) over the items both labelled
        for category in categories:
            chars_a = [marked.get((a, item, category), []) for item in common]
            chars_b = [marked.get((b, item, category), []) for item in common]
            sizes[category] = (sum(map(size, chars_a)), sum(map(size, chars_b)), sum(map(overlap, chars_a, chars_b)))
        size_a = sum(in_a for in_a, _, _ in sizes.values())
        size_b = sum(in_b for _, in_b, _ in sizes.values())
        shared = sum(both for _, _, both in sizes.values())
        pairs.append({
            "a": a, "b": b, "items": len(common), "chars_a": size_a, "chars_b": size_b,
            "f1": f1(shared, size_a, size_b),
            "per_category": {category: f1(both, in_a, in_b) for category, (in_a, in_b, both) in sizes.items()},
        })
    return {"pairs": pairs, "categories": categories, "n_highlights": sum(len(v) for v in raw.values())}


def span_fingerprint(queue: int) -> tuple:
    """The queue's labels and highlights (count, newest id, latest label edit: a highlight is saved with its
    label)."""
    highlights = Highlight.objects.filter(label__item__queue=queue).aggregate(n=Count("pk"), last_id=Max("pk"))
    return queue, labels_fingerprint(Label.objects.filter(item__queue=queue)), tuple(highlights.values())


@report("span-agreement", fingerprint=span_fingerprint, warm="queue")
def span_agreement(queue: int) -> dict:
    return queue_span_agreement(AnnotationQueue.objects.get(pk=queue))
