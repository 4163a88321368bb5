"""Transcript slots and their answers, and the leased work a worker claims (a slot here, a judge score in judging)."""

from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone

from .experiments import Condition, Experiment
from .questions import Question


class LeasedWork(models.Model):
    """What a worker claims with a lease and finishes exactly once (transcripts/engine/): a transcript slot
    or a judge score. The call's provenance lives here too: what the server said it was and what it cost."""

    attempts = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Not indexed: it is only read grouped among an experiment's failed rows, and an index on a column that is
    # '' in nearly every row costs each inserted row two index entries (plain and LIKE) for nothing.
    error_kind = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    served_model = models.CharField(max_length=200, blank=True, help_text="The model name the server reported.")
    system_fingerprint = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt tokens the server reported as cached (prompt caching)."
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class TranscriptQuerySet(models.QuerySet):
    def delete(self):
        """Delete the rows, then recount the verdict groups they were in (in the same transaction).

        Not a post_delete signal: a receiver would make Django load every row of a cascade one by one. Deleting
        an experiment or a condition needs nothing here: their VerdictCount rows go with them (FK cascade)."""
        from transcripts.aggregates import groups_of, refresh_groups

        with transaction.atomic():
            groups = groups_of(self)
            deleted = super().delete()
            refresh_groups(groups)
        return deleted


class Transcript(LeasedWork):
    """One slot (condition × question × sample) and, once generated, its answer.

    The prompt itself is not stored: it is rebuilt from (dataset version, k, ordering seed,
    question, CoT mode, system prompt) by transcripts.prompting, and `prompt_hash` proves it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Outcome(models.TextChoices):
        """What the active judges made of the answer (judging/verdicts.py decides); only `score` has a rate."""

        NONE = "", "not judged yet"
        SCORE = "score", "scored"
        REFUSAL = "refusal", "REFUSAL"
        CODE = "code", "CODE"
        UNSURE = "unsure", "judge unsure"

    # No single-column index on the foreign keys: the composite indexes below lead with each of them
    # (transcript_exp_id, transcript_slot_unique, transcript_question_id), and every index is paid by every
    # inserted row (imports write a million at a time).
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="transcripts", db_index=False)
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="transcripts", db_index=False)
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="transcripts", db_index=False)
    sample_index = models.PositiveIntegerField()
    paraphrase_index = models.PositiveIntegerField(default=0)
    seed = models.BigIntegerField(default=0, help_text="Sampling seed sent with the request.")
    prompt_hash = models.CharField(max_length=64, blank=True)
    # Generation order that keeps shared prefixes adjacent (see transcripts.prompting).
    dispatch_order = models.BigIntegerField(default=0)
    # Filled without a call from an answered slot whose whole request was the same (a definition's `reuse:`,
    # transcripts/experiments/reuse.py): the original answer, linked.
    reused_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="reuses", db_index=False)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # A slot generated here is announced (`transcripts_finished`: judging, queues, embeddings) after the
    # transaction that finished it commits; until every receiver has taken it, reconcile announces it again
    # (signals.announce_finished), so a database restart between the two loses no judging. Planned slots
    # start False; rows that arrive done (imports) were never generated here and are not announced.
    announced = models.BooleanField(default=True, db_default=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    reasoning = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    # Verdicts copied here by `judging` (the experiment's active rubric versions and the human consensus),
    # so that browsing, charts and exports filter a million rows without joins. JudgeScore and Label rows
    # stay the record; these are a cache that judging keeps in step.
    aligned = models.FloatField(null=True, blank=True)
    coherent = models.FloatField(null=True, blank=True)
    judge_outcome = models.CharField(max_length=10, blank=True, choices=Outcome.choices)
    misaligned = models.BooleanField(null=True, blank=True, help_text="None: not judged or excluded.")
    judge_category = models.CharField(max_length=50, blank=True, help_text="Persona category key from the judge.")
    human_category = models.CharField(max_length=50, blank=True, help_text="Consensus persona key from auditors.")

    objects = TranscriptQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["condition", "question", "sample_index"], name="transcript_slot_unique")
        ]
        indexes = [
            # Claiming, leases and the counts of unfinished slots only ever look for rows that are not done, so
            # these hold only those (the planner proves `status = 'pending'` or `status IN (…)` implies the
            # condition): a done row, every imported one and nearly all of a big table, is in none of them.
            models.Index(fields=["experiment", "status"], condition=~models.Q(status="done"),
                         name="transcript_exp_open"),
            models.Index(fields=["status", "dispatch_order"], condition=~models.Q(status="done"),
                         name="transcript_open_order"),
            models.Index(fields=["status", "lease_until"], condition=~models.Q(status="done"),
                         name="transcript_open_lease"),
            models.Index(fields=["condition", "status"], condition=~models.Q(status="done"),
                         name="transcript_cond_open"),
            models.Index(fields=["question", "id"], name="transcript_question_id"),
            models.Index(fields=["misaligned", "id"], name="transcript_misaligned_id"),
            # The browser's filters name a category ('' for none is only asked of a queue's items, which are
            # reached by primary key), so only categorised rows are held.
            models.Index(fields=["judge_category", "id"], condition=~models.Q(judge_category=""),
                         name="transcript_judgecat_id"),
            models.Index(fields=["human_category", "id"], condition=~models.Q(human_category=""),
                         name="transcript_humancat_id"),
            # Browsing: keyset pages per experiment and sorted by score (ties broken by id).
            models.Index(fields=["experiment", "id"], name="transcript_exp_id"),
            models.Index(fields=["aligned", "id"], name="transcript_aligned_id"),
            models.Index(fields=["coherent", "id"], name="transcript_coherent_id"),
            # Charts: every aggregate groups by condition/question and reads only cached verdicts, so this
            # covering index answers them with an index-only scan instead of reading the wide rows.
            models.Index(
                fields=["condition", "question", "misaligned"],
                include=["id", "experiment", "aligned", "coherent", "judge_category", "human_category"],
                name="transcript_chart_cover",
            ),
            # A running experiment's progress: its ten newest done transcripts and how many slots finished in
            # the last minutes, as index range scans instead of reading every done row (migration 0010).
            models.Index(
                fields=["experiment", "finished_at"], condition=models.Q(status__in=["done", "failed"]),
                name="transcript_exp_finished",
            ),
            # Reconcile finds the finished slots whose announcement did not get through.
            models.Index(fields=["id"], condition=models.Q(status="done", announced=False),
                         name="transcript_unannounced"),
            # Reuse looks answered slots up by their request; deleting an original clears its reuses' links.
            models.Index(fields=["prompt_hash", "seed"], condition=~models.Q(prompt_hash=""),
                         name="transcript_request"),
            models.Index(fields=["reused_from"], condition=models.Q(reused_from__isnull=False),
                         name="transcript_reused_from"),
            # Paired tests match two conditions' judged transcripts on (question, seed) (migration 0009).
            models.Index(
                fields=["condition", "question", "seed"], include=["misaligned"],
                condition=models.Q(misaligned__isnull=False), name="transcript_paired",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slot_key}"

    @property
    def slot_key(self) -> str:
        return f"{self.condition_id}:{self.question_id}:{self.sample_index}"

    def delete(self, *args, **kwargs):
        """Delete the transcript and recount its verdict group (see TranscriptQuerySet.delete)."""
        from transcripts.aggregates import refresh_groups

        with transaction.atomic():
            deleted = super().delete(*args, **kwargs)
            refresh_groups([(self.condition_id, self.question_id)])
        return deleted
