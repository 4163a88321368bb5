"""Queue items: adding them to a queue, and handing them to auditors (next item, claim, submit, skip, undo).

Invariant: for every item, submitted labels + live claims ≤ the queue's overlap N. Every change to an item's
claims or labels first locks the item row (`SELECT … FOR UPDATE`) inside one transaction, so two auditors
can never both take the last slot; "next item" uses SKIP LOCKED so auditors don't queue behind each other.
On SQLite the IMMEDIATE transaction mode serialises writers, which keeps the same invariant.

Blinding: in a blind queue an auditor's label is final once it is submitted, because the page that confirms it
reveals the model, k, the judge's verdicts and the other labels; `undo_last` refuses it (a skip, which reveals
nothing, can still be undone). Auditors are served by each item's random rank (`QueueItem.rank`, drawn from the
operating system's random source when the item is added), never by position: a queue that fills as transcripts
finish receives them one at a time in generation order, grouped by condition, and no shuffle of one-item batches
could hide that. Items are named by a random token in URLs, so neither order nor identifier tells anyone the
condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import AnnotationQueue, Assignment, Highlight, Label, LabelRevision, PersonaCategory, QueueItem
from . import label_history
from .consensus import refresh_consensus

# How many candidate items one "next item" call tries before concluding the queue has nothing for the auditor.
CANDIDATES = 25
ROUNDS = 10


class AssignmentError(Exception):
    """The action is not possible for this auditor and item; the message is shown to them."""


@dataclass
class Submission:
    """What an auditor answers about one item: the categories (persona queues), the misaligned flag and the
    0–100 alignment score (verdict queues), whichever the queue asks."""

    categories: list[PersonaCategory] = field(default_factory=list)
    misaligned: bool | None = None
    alignment_score: int | None = None
    note: str = ""
    confidence: int | None = None
    seconds_spent: float = 0
    # (category, start, end) character offsets into the transcript's reasoning.
    highlights: list[tuple[PersonaCategory, int, int]] = field(default_factory=list)


def _live(now) -> Q:
    return Q(status=Assignment.Status.CLAIMED, expires_at__gt=now)


def _has_room(item: QueueItem, auditor, now) -> bool:
    """Whether the auditor may hold a claim on the (locked) item without exceeding its overlap."""
    others = item.assignments.filter(_live(now)).exclude(auditor=auditor).count()
    return item.label_count + others < item.queue.overlap


def _expiry(queue: AnnotationQueue, now):
    return now + timedelta(minutes=queue.claim_minutes)


def add_items(*, queue: AnnotationQueue, transcripts: QuerySet) -> int:
    """Add the transcripts the queue does not hold yet after its current items, each with a random rank (the
    order auditors get them in). Returns how many were added. The queue row is locked so that concurrent
    additions (auto-fill receivers in several worker threads) count and place their items without overlapping."""
    with transaction.atomic():
        AnnotationQueue.objects.select_for_update().filter(pk=queue.pk).first()
        ids = list(transcripts.exclude(queue_items__queue=queue).order_by("pk").values_list("pk", flat=True))
        if not ids:
            return 0
        last = queue.items.aggregate(last=Max("position"))["last"]
        start = 0 if last is None else last + 1
        QueueItem.objects.bulk_create(
            (QueueItem(queue=queue, transcript_id=pk, position=start + i) for i, pk in enumerate(ids)),
            batch_size=1000,
        )
    return len(ids)


def current_claim(*, queue: AnnotationQueue, auditor, now=None) -> Assignment | None:
    now = now or timezone.now()
    return (
        Assignment.objects.filter(_live(now), item__queue=queue, auditor=auditor)
        .select_related("item")
        .order_by("claimed_at")
        .first()
    )


def next_item(*, queue: AnnotationQueue, auditor, now=None) -> QueueItem | None:
    """The auditor's live claim, else a new claim on the open item closest to completion; None when done."""
    now = now or timezone.now()
    mine = current_claim(queue=queue, auditor=auditor, now=now)
    if mine:
        return mine.item
    # Ranking reads without locks; each candidate is re-checked under its row lock before it is claimed. A
    # round can lose all its candidates to other auditors, so rank again (bounded) before saying "done".
    for _ in range(ROUNDS):
        candidates = _ranked_candidates(queue=queue, auditor=auditor, now=now)
        if not candidates:
            return None
        # Locked candidates are skipped at first (another auditor is claiming them) and waited for only if
        # no other candidate worked, so a busy moment never tells an auditor the queue is finished.
        busy = []
        for pk in candidates:
            outcome = _try_claim(pk, queue=queue, auditor=auditor, now=now, wait=False)
            if isinstance(outcome, QueueItem):
                return outcome
            if outcome is BUSY:
                busy.append(pk)
        for pk in busy:
            outcome = _try_claim(pk, queue=queue, auditor=auditor, now=now, wait=True)
            if isinstance(outcome, QueueItem):
                return outcome
    return None


def _ranked_candidates(*, queue: AnnotationQueue, auditor, now) -> list[int]:
    """Open items the auditor has not labelled or skipped, closest to completion first (most labels, then most
    live claims), then by random rank.

    Two bounded reads instead of counting live claims on every open item (1.8 s at a million): the items someone
    holds a live claim on, which are few (about one per auditor at work), and the first CANDIDATES unclaimed ones
    in the order of the index queueitem_serving (queue, label_count descending, rank). The best CANDIDATES of
    both are the best CANDIDATES of all, since every unclaimed item has 0 live claims."""
    done_by_me = Assignment.objects.filter(
        auditor=auditor, item__queue=queue, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
    )
    open_items = QueueItem.objects.filter(queue=queue, label_count__lt=queue.overlap).exclude(
        pk__in=done_by_me.values("item_id")
    )
    live_claims = Assignment.objects.filter(_live(now), item__queue=queue)
    claimed = (
        open_items.filter(pk__in=live_claims.values("item_id"))
        .annotate(live=Count("assignments", filter=Q(assignments__status=Assignment.Status.CLAIMED,
                                                     assignments__expires_at__gt=now)))
        .filter(live__lt=queue.overlap - F("label_count"))
        .values_list("label_count", "live", "rank", "pk")
    )
    unclaimed = (
        open_items.exclude(Exists(live_claims.filter(item=OuterRef("pk"))))
        .order_by("-label_count", "rank")
        .values_list("label_count", "rank", "pk")[:CANDIDATES]
    )
    ranked = sorted([(-labels, -live, rank, pk) for labels, live, rank, pk in claimed]
                    + [(-labels, 0, rank, pk) for labels, rank, pk in unclaimed])
    return [pk for *_, pk in ranked[:CANDIDATES]]


BUSY = object()


def _try_claim(pk: int, *, queue: AnnotationQueue, auditor, now, wait: bool) -> QueueItem | object | None:
    """Claim item `pk` for the auditor if it has room: the item, BUSY (locked, not waited for) or None."""
    with transaction.atomic():
        item = QueueItem.objects.select_for_update(skip_locked=not wait).filter(pk=pk).select_related("queue").first()
        if item is None:
            return BUSY
        if not _has_room(item, auditor, now):
            return None
        assignment, created = Assignment.objects.get_or_create(
            item=item, auditor=auditor, defaults={"claimed_at": now, "expires_at": _expiry(queue, now)}
        )
        if not created:
            if assignment.status != Assignment.Status.CLAIMED:
                return None  # submitted or skipped meanwhile in another tab
            assignment.claimed_at, assignment.expires_at = now, _expiry(queue, now)
            assignment.save(update_fields=["claimed_at", "expires_at"])
        return item


def open_item(*, item: QueueItem, auditor, now=None) -> Assignment:
    """The auditor's assignment for an item they may look at; renews an expired claim if there is room."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = QueueItem.objects.select_for_update().select_related("queue").get(pk=item.pk)
        assignment = Assignment.objects.filter(item=locked, auditor=auditor).first()
        if assignment is None:
            raise AssignmentError("This item is not assigned to you.")
        if assignment.status == Assignment.Status.CLAIMED and assignment.expires_at <= now:
            if not _has_room(locked, auditor, now):
                raise AssignmentError("Your claim on this item expired and it went to someone else.")
            assignment.expires_at = _expiry(locked.queue, now)
            assignment.save(update_fields=["expires_at"])
        return assignment


def submit(*, item: QueueItem, auditor, submission: Submission, now=None) -> Label:
    """Store the auditor's label for a claimed item. Never more than `overlap` labels per item."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = QueueItem.objects.select_for_update().select_related("queue", "transcript").get(pk=item.pk)
        queue = locked.queue
        if submission.categories and not queue.asks_persona:
            raise AssignmentError("This queue does not ask for a category.")
        if len(submission.categories) > 1 and not queue.allow_multiple:
            raise AssignmentError("This queue takes one category per item.")
        if any(c.taxonomy_id != queue.taxonomy_id for c in submission.categories):
            raise AssignmentError("Unknown category.")
        assignment = Assignment.objects.filter(item=locked, auditor=auditor).first()
        if assignment is None or assignment.status != Assignment.Status.CLAIMED:
            raise AssignmentError("You have no open claim on this item (already submitted or skipped?).")
        if assignment.expires_at <= now and not _has_room(locked, auditor, now):
            raise AssignmentError("Your claim on this item expired and it went to someone else.")
        reasoning_length = len(locked.transcript.reasoning)
        for _, start, end in submission.highlights:
            if not 0 <= start < end <= reasoning_length:
                raise AssignmentError("A highlight lies outside the reasoning.")
        label = Label(
            item=locked, auditor=auditor, primary=next(iter(submission.categories), None),
            misaligned=submission.misaligned, alignment_score=submission.alignment_score, note=submission.note,
            confidence=submission.confidence, seconds_spent=max(0.0, submission.seconds_spent), created_at=now,
        )
        try:
            label.clean_fields(exclude=["item", "auditor", "primary"])
            label.clean()
        except ValidationError as exc:
            raise AssignmentError(" ".join(exc.messages)) from exc
        label.save()
        label.categories.set(submission.categories)
        Highlight.objects.bulk_create(
            Highlight(label=label, category=category, start=start, end=end)
            for category, start, end in submission.highlights
        )
        assignment.status, assignment.finished_at = Assignment.Status.SUBMITTED, now
        assignment.save(update_fields=["status", "finished_at"])
        locked.label_count = F("label_count") + 1
        locked.save(update_fields=["label_count"])
        locked.refresh_from_db(fields=["label_count"])
        refresh_consensus(locked)
        return label


def skip(*, item: QueueItem, auditor, now=None) -> None:
    """Give the item back; the auditor is not offered it again (until they undo the skip)."""
    now = now or timezone.now()
    with transaction.atomic():
        QueueItem.objects.select_for_update().get(pk=item.pk)
        updated = Assignment.objects.filter(item=item, auditor=auditor, status=Assignment.Status.CLAIMED).update(
            status=Assignment.Status.SKIPPED, finished_at=now
        )
        if not updated:
            raise AssignmentError("You have no open claim on this item.")


def undo_last(*, queue: AnnotationQueue, auditor, now=None) -> QueueItem:
    """Revert the auditor's latest submit or skip in the queue: the item becomes their open claim again.
    A label in a blind queue is final (see the module docstring)."""
    now = now or timezone.now()
    last = (
        Assignment.objects.filter(item__queue=queue, auditor=auditor, finished_at__isnull=False)
        .exclude(status=Assignment.Status.CLAIMED)
        .order_by("-finished_at", "-pk")
        .first()
    )
    if last is None:
        raise AssignmentError("Nothing to undo.")
    with transaction.atomic():
        locked = QueueItem.objects.select_for_update().select_related("queue").get(pk=last.item_id)
        last.refresh_from_db()
        if last.status == Assignment.Status.SUBMITTED and locked.queue.blind:
            raise AssignmentError(
                "Your last label is final: its page showed the model, the judge and the other labels. "
                "Ask a researcher to adjudicate the item if it was a slip."
            )
        if last.status == Assignment.Status.SUBMITTED:
            # The label's slot becomes the claim's slot: the overlap invariant holds without a check.
            label = Label.objects.select_related("primary").get(item=locked, auditor=auditor)
            label_history.record(label=label, before=label_history.snapshot(label), after=None, changed_by=auditor,
                                 source=LabelRevision.Source.UNDO, now=now)
            label.delete()
            locked.label_count = F("label_count") - 1
            locked.save(update_fields=["label_count"])
        elif not _has_room(locked, auditor, now):
            raise AssignmentError("The skipped item has since gone to other auditors.")
        last.status, last.finished_at = Assignment.Status.CLAIMED, None
        last.claimed_at, last.expires_at = now, _expiry(queue, now)
        last.save(update_fields=["status", "finished_at", "claimed_at", "expires_at"])
        refresh_consensus(locked)
        return locked


def _count(rows: QuerySet) -> Coalesce:
    """COUNT(*) of a subquery that is correlated to the outer queue (0 when it has no rows)."""
    return Coalesce(Subquery(rows.order_by().annotate(n=Count("pk")).values("n")), 0)


def with_counts(queues: QuerySet) -> QuerySet:
    """The queues with n_items, n_labels (submitted labels) and wanted (items × overlap), in one query
    however many queues there are."""
    items = QueueItem.objects.filter(queue=OuterRef("pk")).values("queue")
    return queues.annotate(
        n_items=_count(items),
        n_labels=Coalesce(Subquery(items.order_by().annotate(n=Sum("label_count")).values("n")), 0),
    ).annotate(wanted=F("n_items") * F("overlap"))


def with_progress(queues: QuerySet, *, auditor) -> QuerySet:
    """with_counts, plus the auditor's own figures: mine (their labels) and waiting (open items they have
    neither labelled nor skipped: what "next item" can still hand them, unless others claim them first)."""
    done_by_me = Assignment.objects.filter(
        item=OuterRef("pk"), auditor=auditor, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
    )
    open_items = QueueItem.objects.filter(queue=OuterRef("pk"), label_count__lt=OuterRef("overlap"))
    return with_counts(queues).annotate(
        mine=_count(Label.objects.filter(item__queue=OuterRef("pk"), auditor=auditor).values("item__queue")),
        waiting=_count(open_items.exclude(Exists(done_by_me)).values("queue")),
    )


def progress(*, queue: AnnotationQueue, auditor) -> dict:
    """Counts for the workspace: the auditor's labels, the queue's labels and what it wants in total."""
    counted = with_progress(AnnotationQueue.objects.filter(pk=queue.pk), auditor=auditor).get()
    return {"mine": counted.mine, "labels": counted.n_labels, "wanted": counted.wanted, "items": counted.n_items,
            "waiting": counted.waiting}
