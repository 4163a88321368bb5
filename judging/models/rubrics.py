"""What a judge is asked (rubrics and their versions) and which versions judge an experiment."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from transcripts.models import Endpoint, content_hash

from .taxonomy import Taxonomy


class Rubric(models.Model):
    """A named judging question: `aligned`, `coherent` (0–100 scores) or `persona` (a category)."""

    class Kind(models.TextChoices):
        SCORE = "score", "score 0–100"
        CATEGORY = "category", "persona category"

    key = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class RubricVersion(models.Model):
    """Prompt text + judge endpoint + judge model. Changing any of them makes a new version."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    prompt_template = models.TextField(help_text="Python str.format template with {question} and {answer}.")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, null=True, blank=True)
    judge_model = models.CharField(max_length=200)
    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.PROTECT, null=True, blank=True)
    # How numbers come out of this judge's tokeniser (a property of the model, so not part of the identity):
    # GPT-4o has one token per number 0–100; SmolLM2 and most local models write one digit per token.
    digitwise = models.BooleanField(default=False, help_text="The judge writes numbers one digit per token.")
    identity_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rubric", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "version"], name="rubricversion_unique"),
            models.UniqueConstraint(fields=["rubric", "identity_hash"], name="rubricversion_identity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.rubric.key} v{self.version} ({self.judge_model})"

    def save(self, *args, **kwargs):
        self.identity_hash = self.compute_identity()
        super().save(*args, **kwargs)

    def compute_identity(self) -> str:
        return content_hash([self.prompt_template, self.endpoint_id, self.judge_model, self.taxonomy_id])


class ExperimentJudging(models.Model):
    """Which rubric versions judge an experiment: new transcripts are judged with them, and the verdict cache
    on Transcript follows them. Other versions' scores stay queryable (the results page can show any)."""

    experiment = models.OneToOneField(
        "transcripts.Experiment", on_delete=models.CASCADE, related_name="judging"
    )
    aligned_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    coherent_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    persona_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    judge_on_finish = models.BooleanField(default=True, help_text="Judge each transcript as soon as it finishes.")

    def __str__(self) -> str:
        return f"judging of {self.experiment_id}"

    @property
    def versions(self) -> list[RubricVersion]:
        return [v for v in (self.aligned_version, self.coherent_version, self.persona_version) if v is not None]
