"""A queue's items for researchers, filtered the way the agreement page's confusion cells link to them (judge
category, consensus, one auditor's label) and paged in queue order.

Pages are keyset pages on (position, id), the index queueitem_queue_position: a page reads its rows and the
next one, never counting or skipping the items before it, so page 2,000 of a 200,000-item queue costs what the
first page does. The cursors are those of the transcript browser (transcripts.paging).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet

from transcripts.paging import decode_cursor, encode_cursor, rows_after

from ..models import AnnotationQueue, Label, QueueItem

ITEM_FILTERS = ("judge", "human", "auditor", "label")


def matching_items(queue: AnnotationQueue, *, judge: str | None = None, human: str | None = None,
                   auditor: str | None = None, label: str | None = None) -> QuerySet:
    """The queue's items whose transcript the judge put in `judge` and the consensus in `human` (either may be
    "" for none), and that `auditor` (a username) labelled `label` (a category key)."""
    items = queue.items.all()
    if judge is not None:
        items = items.filter(transcript__judge_category=judge)
    if human is not None:
        items = items.filter(transcript__human_category=human)
    if auditor and label is not None:
        # EXISTS, not a join: each item is probed through label_unique (item, auditor) while the page is walked.
        items = items.filter(Exists(Label.objects.filter(
            item=OuterRef("pk"), auditor__username=auditor, primary__key=label
        )))
    return items


@dataclass
class ItemPage:
    items: list[QueueItem]
    previous_cursor: str | None  # the page before this one ends before this cursor (None: this is the first)
    next_cursor: str | None  # the page after this one starts after this cursor (None: this is the last)


def items_page(matching: QuerySet, rows: QuerySet, *, after: str = "", before: str = "", size: int) -> ItemPage:
    """The `size` items of `matching` after the cursor `after` in queue order, or the `size` items before
    `before` (the previous page), or the first ones; each loaded from `rows` (which says what to select). A
    malformed cursor reads as none (a bad link shows the first page).

    The page's keys come first, then its rows by primary key: with a filter on the transcripts' categories,
    PostgreSQL may hash-join the queue with the category's transcripts, which reads only indexes when it is not
    asked for the transcripts' rows as well."""
    start, end = decode_cursor(after), decode_cursor(before)
    keys = matching.values_list("position", "pk")
    if end is not None:
        keys = list(rows_after(keys.order_by("-position", "-id"), "position", True, *end)[:size + 1])
        earlier, later = len(keys) > size, True  # the item the cursor names comes later
        keys = keys[:size][::-1]
    else:
        keys = keys.order_by("position", "id")
        keys = list((rows_after(keys, "position", False, *start) if start else keys)[:size + 1])
        earlier, later = start is not None, len(keys) > size
        keys = keys[:size]
    return ItemPage(
        items=list(rows.filter(pk__in=[pk for _, pk in keys]).order_by("position", "id")),
        previous_cursor=encode_cursor(*keys[0]) if earlier and keys else None,
        next_cursor=encode_cursor(*keys[-1]) if later and keys else None,
    )
