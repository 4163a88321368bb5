"""The history of submitted labels: every change to one (a CSV import replacing it, an auditor's undo withdrawing
it) is recorded here as a LabelRevision with who, when and the label before and after, so no submitted label is
ever replaced without a trace. Creating a label is not a change: the label itself records that.
"""

from __future__ import annotations

from django.utils import timezone

from ..models import Label, LabelRevision


def snapshot(label: Label) -> dict:
    """What the label says, as plain values (the revision's before/after)."""
    return {
        "primary": label.primary.key if label.primary_id else None,
        "categories": sorted(label.categories.values_list("key", flat=True)),
        "misaligned": label.misaligned,
        "alignment_score": label.alignment_score,
        "note": label.note,
        "confidence": label.confidence,
        "seconds_spent": label.seconds_spent,
        "highlights": [list(h) for h in label.highlights.order_by("start", "end", "pk")
                       .values_list("category__key", "start", "end")],
    }


def record(*, label: Label, before: dict, after: dict | None, changed_by, source: LabelRevision.Source,
           now=None) -> LabelRevision | None:
    """Record a change to a submitted label from `before` to `after` (None: the label was withdrawn); nothing
    when the two are the same. Call it inside the transaction that changes the label."""
    if before == after:
        return None
    return LabelRevision.objects.create(
        item_id=label.item_id, auditor_id=label.auditor_id, changed_by=changed_by, source=source,
        changed_at=now or timezone.now(), before=before, after=after,
    )


def changes(revision: LabelRevision) -> list[tuple[str, str, str]]:
    """The fields the revision changed as text to show: (field, before, after), in the snapshot's order."""
    after = revision.after or {}
    return [(name, _shown(value), _shown(after.get(name))) for name, value in revision.before.items()
            if after.get(name) != value]


def _shown(value) -> str:
    if value in (None, "", []):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
