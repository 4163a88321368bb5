"""People's verdicts: annotation queues, their items and claims, labels with their spans and history, and gold
labels that settle an item."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from transcripts.models import Experiment, Transcript

from .taxonomy import PersonaCategory, Taxonomy


class AnnotationQueue(models.Model):
    """A set of transcripts for auditors to label, with N labels wanted per transcript."""

    class Asks(models.TextChoices):
        PERSONA = "persona", "persona category"
        VERDICT = "verdict", "misaligned or not"
        BOTH = "both", "persona category and misaligned or not"

    name = models.CharField(max_length=200, unique=True)
    taxonomy = models.ForeignKey(
        Taxonomy, on_delete=models.PROTECT, help_text="The categories auditors choose from (persona queues)."
    )
    asks = models.CharField(
        max_length=10, choices=Asks.choices, default=Asks.PERSONA,
        help_text="What each label answers: the persona category, whether the answer is misaligned (the human "
        "reference for the judge's misaligned flag), or both.",
    )
    ask_alignment_score = models.BooleanField(
        default=False, help_text="Also ask for a 0–100 alignment score (0 = totally misaligned, the judge's scale)."
    )
    overlap = models.PositiveIntegerField(default=2, help_text="Labels wanted per transcript.")
    auditors = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="annotation_queues", blank=True)
    instructions = models.TextField(blank=True)
    allow_multiple = models.BooleanField(default=False, help_text="Allow several categories per label.")
    blind = models.BooleanField(default=True, help_text="Hide model, k, judge scores and other labels.")
    claim_minutes = models.PositiveIntegerField(default=30, help_text="An abandoned claim expires after this.")
    filter_query = models.TextField(blank=True, help_text="The transcript filter the queue was built from.")
    # A queue that grows while its experiment runs, so auditors can start before generation ends.
    auto_fill_experiment = models.ForeignKey(
        Experiment, on_delete=models.SET_NULL, null=True, blank=True, related_name="auto_fill_queues",
        help_text="Add this experiment's finished chain-of-thought transcripts as they arrive.",
    )
    majority_share = models.FloatField(
        default=0.5,
        help_text="Without a gold label, the most frequent category is the consensus when its share of the "
        "item's labels is greater than this.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def asks_persona(self) -> bool:
        return self.asks in (self.Asks.PERSONA, self.Asks.BOTH)

    @property
    def asks_verdict(self) -> bool:
        return self.asks in (self.Asks.VERDICT, self.Asks.BOTH)


def random_rank() -> int:
    """A serving rank: 63 bits from the operating system's random source (a seeded generator could be replayed)."""
    return secrets.randbits(63)


class QueueItem(models.Model):
    queue = models.ForeignKey(AnnotationQueue, on_delete=models.CASCADE, related_name="items")
    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="queue_items")
    # Arrival order, for researchers' listings and exports. A queue that fills as transcripts finish gets them in
    # generation order, grouped by condition, so auditors are never served by position.
    position = models.PositiveIntegerField(default=0)
    # The order auditors are served in: drawn per item, so it says nothing of when or with what it arrived.
    rank = models.BigIntegerField(default=random_rank, editable=False)
    # The item's name in URLs: random, so it says nothing about the item's place in the queue or its condition.
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Denormalised so "next item" can prefer items closest to completion without counting.
    label_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["queue", "position"]
        constraints = [models.UniqueConstraint(fields=["queue", "transcript"], name="queueitem_unique")]
        indexes = [
            # "Next item": a queue's open items, closest to completion first, then by rank.
            models.Index(fields=["queue", "-label_count", "rank"], name="queueitem_serving"),
            # The items page walks a queue in order a page at a time (keyset on position, id).
            models.Index(fields=["queue", "position", "id"], name="queueitem_queue_position"),
        ]

    def __str__(self) -> str:
        return f"{self.queue} · {self.transcript_id}"


class Assignment(models.Model):
    """An auditor's claim on an item; it expires if abandoned, and becomes `submitted` with the label."""

    class Status(models.TextChoices):
        CLAIMED = "claimed"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"

    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="assignments")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CLAIMED)
    claimed_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # When the claim became submitted or skipped: "undo" reverts the auditor's latest one.
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "auditor"], name="assignment_unique")]
        indexes = [
            models.Index(fields=["item", "status", "expires_at"], name="assignment_item_status"),
            # "Next item" reads a queue's live claims: only claims, which are few next to submitted labels.
            models.Index(fields=["expires_at"], condition=models.Q(status="claimed"), name="assignment_claims"),
        ]

    def __str__(self) -> str:
        return f"{self.auditor} → {self.item}"


class Label(models.Model):
    """An auditor's submitted judgement of one queue item."""

    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="labels")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    # The category chosen first; agreement and consensus compare it. `categories` holds all chosen ones.
    primary = models.ForeignKey(PersonaCategory, on_delete=models.PROTECT, null=True, related_name="+")
    categories = models.ManyToManyField(PersonaCategory, related_name="labels")
    note = models.TextField(blank=True)
    # The human verdict (verdict queues): null where the queue did not ask.
    misaligned = models.BooleanField(
        null=True, blank=True, help_text="The auditor's verdict: is the answer misaligned?"
    )
    alignment_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(100)],
        help_text="0 (totally misaligned) – 100 (totally aligned), the judge's scale.",
    )
    confidence = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 (guess) – 5 (certain).")
    seconds_spent = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "auditor"], name="label_unique"),
            models.CheckConstraint(condition=models.Q(alignment_score__lte=100), name="label_alignment_score_range"),
        ]

    def __str__(self) -> str:
        return f"{self.auditor} on {self.item}"

    def clean(self) -> None:
        """A label answers every question its queue asks (its categories are checked where they are set)."""
        queue = self.item.queue
        errors = {}
        if queue.asks_persona and self.primary_id is None:
            errors["primary"] = "This queue asks for a persona category."
        if queue.asks_verdict and self.misaligned is None:
            errors["misaligned"] = "This queue asks whether the answer is misaligned."
        if queue.ask_alignment_score and self.alignment_score is None:
            errors["alignment_score"] = "This queue asks for an alignment score."
        if errors:
            raise ValidationError(errors)


class Highlight(models.Model):
    """A span of the reasoning (character offsets) that shows a category."""

    # An auditor marks a few passages per item; the bound keeps a label's spans from weighing on every page
    # and report that reads them (judging.annotation.spans copes with more, as labels stored before the bound may have).
    MAX_PER_LABEL = 50

    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="highlights")
    category = models.ForeignKey(PersonaCategory, on_delete=models.PROTECT)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()

    class Meta:
        ordering = ["label", "start"]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="highlight_nonempty"),
        ]

    def __str__(self) -> str:
        return f"{self.category} [{self.start}:{self.end}]"


class LabelRevision(models.Model):
    """A change to a submitted label (judging.annotation.label_history): whose label, who changed it, when, how,
    and what it said before and after. Keyed by item and auditor, not by the label, so an undo that deletes the
    label keeps its history."""

    class Source(models.TextChoices):
        IMPORT = "import", "CSV import"
        UNDO = "undo", "auditor's undo"

    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="label_revisions")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=10, choices=Source.choices)
    before = models.JSONField()
    after = models.JSONField(null=True, blank=True, help_text="Empty: the label was withdrawn.")

    class Meta:
        ordering = ["item", "changed_at", "pk"]

    def __str__(self) -> str:
        return f"{self.auditor} on {self.item}, {self.source} by {self.changed_by} at {self.changed_at:%Y-%m-%d %H:%M}"


class Adjudication(models.Model):
    """A researcher's gold label for a queue item, which overrides the auditors' majority."""

    item = models.OneToOneField(QueueItem, on_delete=models.CASCADE, related_name="adjudication")
    category = models.ForeignKey(PersonaCategory, on_delete=models.PROTECT)
    adjudicator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"gold {self.category} for {self.item}"
