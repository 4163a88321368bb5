"""The human label of a queue item: the gold label if a researcher set one, else the auditors' majority.

The consensus is copied to `Transcript.human_category` (by judging.verdicts, the cache's one writer), the field
the transcript browser, charts and exports read, every time an item's labels or gold change.
"""

from __future__ import annotations

from collections import Counter

from django.db import transaction

from ..models import Adjudication, Label, PersonaCategory, QueueItem
from ..reports import warm
from ..verdicts import set_human_category


def majority(labels: list[str], *, share: float) -> str:
    """The most frequent label when its share of the labels is greater than `share`, else ''."""
    if not labels:
        return ""
    (top, count), *rest = Counter(labels).most_common()
    if rest and rest[0][1] == count:
        return ""
    return top if count / len(labels) > share else ""


def item_labels(item: QueueItem) -> list[str]:
    """The primary category key of each submitted label of the item."""
    return list(Label.objects.filter(item=item, primary__isnull=False).values_list("primary__key", flat=True))


def item_consensus(item: QueueItem) -> str:
    gold = Adjudication.objects.filter(item=item).values_list("category__key", flat=True).first()
    if gold:
        return gold
    return majority(item_labels(item), share=item.queue.majority_share)


def refresh_consensus(item: QueueItem) -> str:
    """Recompute the item's consensus and write it to its transcript (every change of an item's labels or gold
    comes here, so here the queue's reports are refreshed ahead of the next view, once it commits)."""
    consensus = item_consensus(item)
    set_human_category(item.transcript_id, consensus)
    warm("queue", item.queue_id)
    return consensus


def is_disagreement(labels: list[str]) -> bool:
    return len(set(labels)) > 1


@transaction.atomic
def set_gold(*, item: QueueItem, category: PersonaCategory | None, adjudicator, note: str = "") -> str:
    """Set (or, with `category=None`, clear) the gold label of an item; returns the new consensus."""
    if category is None:
        Adjudication.objects.filter(item=item).delete()
    else:
        Adjudication.objects.update_or_create(
            item=item, defaults={"category": category, "adjudicator": adjudicator, "note": note}
        )
    return refresh_consensus(item)
