"""Gold suites: frozen reference verdicts, and each judge's agreement with them over time."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from transcripts.models import Transcript

from .annotation import AnnotationQueue
from .rubrics import RubricVersion
from .taxonomy import PersonaCategory


class GoldSuite(models.Model):
    """A frozen reference set: adjudicated transcripts with their gold verdicts, to score judges against.

    Items are copied at freezing time, so later relabelling of the source queue does not move the reference."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    source_queue = models.ForeignKey(
        AnnotationQueue, on_delete=models.SET_NULL, null=True, blank=True, related_name="gold_suites"
    )
    frozen_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-frozen_at"]

    def __str__(self) -> str:
        return self.name


class GoldItem(models.Model):
    """One transcript of a gold suite with its gold persona category and/or gold misaligned flag."""

    suite = models.ForeignKey(GoldSuite, on_delete=models.CASCADE, related_name="items")
    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="gold_items")
    category = models.ForeignKey(PersonaCategory, on_delete=models.PROTECT, null=True, blank=True)
    misaligned = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["suite", "transcript"]
        constraints = [
            models.UniqueConstraint(fields=["suite", "transcript"], name="golditem_unique"),
            models.CheckConstraint(
                condition=models.Q(category__isnull=False) | models.Q(misaligned__isnull=False),
                name="golditem_has_gold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.suite} · {self.transcript_id}"


class GoldRun(models.Model):
    """A judge's agreement with a gold suite: the misaligned flag (an aligned + coherent version pair) or the
    persona category (a persona version). Created when a researcher runs the judge on the suite; the figures are
    filled in once that judge's verdicts on the suite are all in, and `recorded_at` dates the history."""

    class Kind(models.TextChoices):
        FLAG = "flag", "misaligned flag"
        CATEGORY = "category", "persona category"

    suite = models.ForeignKey(GoldSuite, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    aligned_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    coherent_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    persona_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(null=True, blank=True)
    n = models.PositiveIntegerField(default=0, help_text="Gold items with a usable verdict of this judge.")
    n_missing = models.PositiveIntegerField(default=0, help_text="Gold items it gave no usable verdict on.")
    kappa = models.FloatField(null=True, blank=True)
    kappa_low = models.FloatField(null=True, blank=True)
    kappa_high = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True)
    accuracy_low = models.FloatField(null=True, blank=True)
    accuracy_high = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["suite", "kind", "recorded_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["suite", "kind", "aligned_version", "coherent_version", "persona_version"],
                name="goldrun_unique", nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind="flag", aligned_version__isnull=False, coherent_version__isnull=False,
                             persona_version__isnull=True)
                    | models.Q(kind="category", aligned_version__isnull=True, coherent_version__isnull=True,
                               persona_version__isnull=False)
                ),
                name="goldrun_versions_match_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.suite}: {self.judge_name}"

    @property
    def versions(self) -> list[RubricVersion]:
        return [v for v in (self.aligned_version, self.coherent_version, self.persona_version) if v is not None]

    @property
    def judge_name(self) -> str:
        return " + ".join(f"{v.rubric.key} v{v.version} ({v.judge_model})" for v in self.versions)
