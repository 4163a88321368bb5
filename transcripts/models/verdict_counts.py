"""The verdict cache of each (condition, question) group, counted: what charts and statistics read."""

from __future__ import annotations

from django.db import models

from .experiments import Condition, Experiment
from .questions import Question


class VerdictCount(models.Model):
    """The verdict cache of one (condition, question) group's done transcripts, counted: what charts, results
    tables and statistics read instead of grouping the transcript table (transcripts/aggregates.py).

    Maintained by the writers of the cache (judging/verdicts.py), by generation when a transcript is done and
    by transcript deletes, which recount exactly the groups they touched. A group without done transcripts
    has no row. `python manage.py rebuild_aggregates` recounts from scratch."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="verdict_counts")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="+")
    done = models.PositiveIntegerField(help_text="Done transcripts.")
    judged = models.PositiveIntegerField(help_text="… with a verdict of either judge.")
    n = models.PositiveIntegerField(help_text="… counted in rates (both judges scored: misaligned not NULL).")
    misaligned = models.PositiveIntegerField()
    refusals = models.PositiveIntegerField(help_text="The aligned judge said REFUSAL or CODE.")
    unsure = models.PositiveIntegerField()
    # Sums and counts rather than means, so that groups add up to any coarser mean.
    aligned_sum = models.FloatField()
    aligned_count = models.PositiveIntegerField()
    coherent_sum = models.FloatField()
    coherent_count = models.PositiveIntegerField()
    # Generation tokens of the done transcripts: a running experiment's progress sums these, not its rows.
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["condition", "question"], name="verdictcount_group_unique")
        ]

    def __str__(self) -> str:
        return f"{self.condition_id}:{self.question_id}: {self.misaligned}/{self.n}"


class CategoryCount(models.Model):
    """Done transcripts of one (condition, question) group per persona category, from the judge
    (`judge_category`) or the auditors' consensus (`human_category`); category "" = none. Maintained with
    VerdictCount, by the same writers."""

    class Source(models.TextChoices):
        JUDGE = "judge"
        HUMAN = "human"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="category_counts")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=5, choices=Source.choices)
    category = models.CharField(max_length=50, blank=True)
    transcripts = models.PositiveIntegerField()
    misaligned = models.PositiveIntegerField(help_text="… of which misaligned.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["condition", "question", "source", "category"], name="categorycount_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.condition_id}:{self.question_id} {self.source} {self.category or '-'}: {self.transcripts}"
