"""A Batch API batch of the call engine (transcripts/engine/batches.py): the rows of one claim, sent as one JSONL
file to a batch endpoint, and every id the provider gave it, recorded before anything depends on it."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .endpoints import Endpoint
from .experiments import Experiment


class CallBatchQuerySet(models.QuerySet):
    def open(self) -> CallBatchQuerySet:
        """Batches not applied yet: their rows are the provider's, and what they may cost is not billed."""
        return self.exclude(state=CallBatch.State.APPLIED)


class CallBatch(models.Model):
    """One claim of a job's rows on a batch endpoint (`Endpoint.batch_api`), all carrying `claim_token`.

    Its state says what is known to have happened at the provider: `preparing` (rows claimed; a file may have
    been uploaded, unrecorded), `uploaded` (input file recorded; a batch may have been created, unrecorded: it
    is found again by its metadata), `submitted` (batch id recorded; polled), `applied` (results written, rows
    missing from them back in line). The rows of a batch hold no lease (`lease_until` empty): a batch may take
    a day, and this row, not a lease, is what brings them back."""

    class State(models.TextChoices):
        PREPARING = "preparing"
        UPLOADED = "uploaded"
        SUBMITTED = "submitted"
        APPLIED = "applied"

    job = models.CharField(max_length=50)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="call_batches")
    experiments = models.ManyToManyField(Experiment, related_name="call_batches")
    claim_token = models.UUIDField(unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PREPARING)
    url = models.CharField(max_length=100, blank=True, help_text="The API path every request of the file asks.")
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(
        default=0, help_text="Its requests' estimated prompt tokens: what it holds of the account's batch queue.")
    estimated_usd = models.JSONField(
        default=dict, blank=True, help_text="What its requests may cost at the batch prices (every answer at "
        "max_tokens), by experiment id: counted against each experiment's budget until the batch is applied.")
    input_file_id = models.CharField(max_length=200, blank=True)
    batch_id = models.CharField(max_length=200, blank=True)
    provider_status = models.CharField(max_length=30, blank=True, help_text="validating, in_progress, completed, …")
    provider_completed = models.PositiveIntegerField(default=0)
    provider_failed = models.PositiveIntegerField(default=0)
    output_file_id = models.CharField(max_length=200, blank=True)
    error_file_id = models.CharField(max_length=200, blank=True)
    answered = models.PositiveIntegerField(default=0, help_text="Rows recorded done from its output.")
    failed = models.PositiveIntegerField(default=0, help_text="Rows failed for good (a terminal error).")
    requeued = models.PositiveIntegerField(default=0, help_text="Rows back in line (error file, expired, missing).")
    next_check_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    objects = CallBatchQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["endpoint", "next_check_at"], condition=~models.Q(state="applied"),
                         name="callbatch_open"),
        ]

    def __str__(self) -> str:
        return f"{self.job} batch {self.batch_id or self.pk} ({self.state})"
