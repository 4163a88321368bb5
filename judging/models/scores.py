"""A judge's verdict on a transcript."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from transcripts.models import LeasedWork, Transcript

from .rubrics import RubricVersion
from .taxonomy import PersonaCategory


class JudgeScore(LeasedWork):
    """One rubric version's verdict on one transcript (exactly one per pair)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Outcome(models.TextChoices):
        SCORE = "score", "number"
        REFUSAL = "refusal", "REFUSAL"
        CODE = "code", "CODE"
        UNSURE = "unsure", "judge unsure (< 0.25 mass on numbers)"
        CATEGORY = "category", "category"

    class Method(models.TextChoices):
        SINGLE_TOKEN = "single_token", "logprobs, one token per number"
        DIGITS = "digits", "logprobs, digit by digit"
        PARSED = "parsed", "parsed from text (no logprobs)"
        IMPORTED = "imported", "imported"

    # The foreign keys have no single-column index: judgescore_unique leads with the transcript,
    # judgescore_version_score with the version, and the few categorised rows are in judgescore_category.
    # Every index is paid by every score written (an import writes two per transcript).
    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="judge_scores",
                                   db_index=False)
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.PROTECT, related_name="scores",
                                       db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    method = models.CharField(max_length=15, choices=Method.choices, blank=True)
    score = models.FloatField(null=True, blank=True)
    category = models.ForeignKey(PersonaCategory, on_delete=models.PROTECT, null=True, blank=True, db_index=False)
    top_logprobs = models.JSONField(null=True, blank=True, help_text="token → logprob of the first token.")
    raw_text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transcript", "rubric_version"], name="judgescore_unique"),
        ]
        indexes = [
            models.Index(fields=["rubric_version", "score"], name="judgescore_version_score"),
            # Leases are only looked for among scores not done (claimed, expired), so done ones stay out.
            models.Index(fields=["status", "lease_until"], condition=~models.Q(status="done"),
                         name="judgescore_open_lease"),
            models.Index(fields=["category"], condition=models.Q(category__isnull=False),
                         name="judgescore_category"),
            # A version's latest done verdict in one index descent: the fingerprint of cached statistics.
            models.Index(fields=["rubric_version", "finished_at"], condition=models.Q(status="done"),
                         name="judgescore_version_done"),
            # The results page's judging progress counts a version's waiting and failed scores here: after a
            # run these are few, and the done ones are counted once per new verdict (judging.results.metrics.progress).
            models.Index(fields=["rubric_version", "transcript"], condition=~models.Q(status="done"),
                         name="judgescore_version_open"),
        ]

    def __str__(self) -> str:
        verdict = self.score if self.score is not None else self.outcome
        return f"{self.rubric_version} on {self.transcript_id}: {verdict}"
