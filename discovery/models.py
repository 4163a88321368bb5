"""Discovery's data: one vector per (text, embedding endpoint version), the transcripts' texts pointing at them,
and versioned cluster runs with their clusters and members."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

from transcripts.models import Endpoint, Experiment, LeasedWork, Transcript

if TYPE_CHECKING:
    import numpy as np


class EmbeddingConfig(models.Model):
    """Which endpoint embeds (admin-owned, like every endpoint): its current version is the one new vectors use.
    The newest active row is the one in force."""

    endpoint_name = models.CharField(max_length=100, help_text="An endpoint's name; its current version embeds.")
    embed_on_finish = models.BooleanField(default=True, help_text="Embed transcripts as they finish.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"embeddings by {self.endpoint_name}"


class TextVector(LeasedWork):
    """The vector of one text by one embedding endpoint version: the call engine's unit of embedding work.
    The text itself is not stored again: the rows pointing here (`TranscriptText`) hold it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+", db_index=False)
    text_hash = models.CharField(max_length=64, help_text="SHA-256 of the text.")
    # Whose transcript first needed the vector: its cost is charged there, its budget decides. Another
    # experiment's identical text reuses the vector.
    experiment = models.ForeignKey(Experiment, on_delete=models.SET_NULL, null=True, related_name="+",
                                   db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    vector = models.BinaryField(null=True, help_text="float32, little-endian, length 1.")
    dimensions = models.PositiveSmallIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "text_hash"], name="textvector_one_per_text")]
        indexes = [
            models.Index(fields=["endpoint", "status", "id"], condition=~models.Q(status="done"),
                         name="textvector_open"),
            models.Index(fields=["status", "lease_until"], condition=~models.Q(status="done"),
                         name="textvector_leases"),
        ]

    def __str__(self) -> str:
        return f"vector {self.pk} ({self.status})"

    def array(self) -> np.ndarray | None:
        import numpy as np

        return None if self.vector is None else np.frombuffer(bytes(self.vector), dtype="<f4")


class TranscriptText(models.Model):
    """A transcript's reasoning or answer, as embedded by one endpoint version."""

    class Kind(models.TextChoices):
        REASONING = "reasoning"
        ANSWER = "answer"

    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+", db_index=False)
    vector = models.ForeignKey(TextVector, on_delete=models.CASCADE, related_name="texts")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["transcript", "kind", "endpoint"], name="transcripttext_one")]
        indexes = [models.Index(fields=["endpoint", "kind", "transcript"], name="transcripttext_by_endpoint")]

    def __str__(self) -> str:
        return f"{self.kind} of transcript {self.transcript_id}"


class ClusterRun(models.Model):
    """One clustering of a transcript filter's reasonings: reproducible from its seed, parameters, filter and
    embedding endpoint version; computed by a worker, which reports its progress here."""

    class Algorithm(models.TextChoices):
        HDBSCAN = "hdbscan", "HDBSCAN (finds the number; leaves noise out)"
        KMEANS = "kmeans", "k-means (a chosen number)"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    name = models.CharField(max_length=200, blank=True)
    filter_query = models.TextField(blank=True, help_text="The transcript filter, as a query string.")
    transcript_ids = models.JSONField(default=list, help_text="What the filter selected when the run was made.")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+",
                                 help_text="The embedding endpoint version whose vectors are clustered.")
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default=Algorithm.HDBSCAN)
    n_clusters = models.PositiveIntegerField(null=True, blank=True, help_text="k-means: how many clusters.")
    min_cluster_size = models.PositiveIntegerField(default=5, help_text="HDBSCAN: the smallest cluster.")
    seed = models.PositiveIntegerField(default=0)
    projection = models.CharField(max_length=10, default="pca", help_text="How the 2-D map is drawn.")
    naming_endpoint = models.ForeignKey(Endpoint, on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="+", help_text="The chat endpoint that names clusters.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Per cent.")
    message = models.TextField(blank=True)
    n_points = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return self.name or f"run {self.pk}"


class Cluster(models.Model):
    """One cluster of a run (label -1: HDBSCAN's noise, points that belong to no cluster)."""

    run = models.ForeignKey(ClusterRun, on_delete=models.CASCADE, related_name="clusters")
    label = models.IntegerField()
    size = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=200, blank=True, help_text="An LLM's name for it: untrusted text.")
    description = models.TextField(blank=True, help_text="An LLM's description: untrusted text.")
    sample = models.JSONField(default=list, help_text="The transcript ids shown to the namer.")

    class Meta:
        ordering = ["run", "label"]
        constraints = [models.UniqueConstraint(fields=["run", "label"], name="cluster_label_unique")]

    def __str__(self) -> str:
        return self.name or ("noise" if self.label < 0 else f"cluster {self.label}")

    @property
    def is_noise(self) -> bool:
        return self.label < 0


class ClusterMember(models.Model):
    """A transcript's place in a run: its cluster and its point on the map."""

    run = models.ForeignKey(ClusterRun, on_delete=models.CASCADE, related_name="members", db_index=False)
    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="+", db_index=False)
    label = models.IntegerField()
    x = models.FloatField()
    y = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "transcript"], name="clustermember_unique")]
        indexes = [models.Index(fields=["run", "label", "transcript"], name="clustermember_label")]

    def __str__(self) -> str:
        return f"transcript {self.transcript_id} in cluster {self.label}"
