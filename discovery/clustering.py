"""Cluster runs: the reasonings of a transcript filter, clustered by meaning and drawn on a 2-D map, in a worker.

A run is reproducible: it keeps its filter, the transcript ids it resolved to, the embedding endpoint version, the
algorithm, its parameters and its seed. A cluster is a hypothesis to label, not a finding (docs/discovery.md).

- k-means (scikit-learn, `n_clusters`, seeded, the best of three k-means++ starts; mini-batch k-means above
  KMEANS_FULL_LIMIT points) on the length-1 vectors: Euclidean distance between them orders pairs as cosine
  similarity does.
- HDBSCAN (scikit-learn) finds the number of clusters itself and leaves points that belong to none as noise
  (label -1). Density estimates are unreliable in 384 dimensions, so it runs on the first PCA_DIMENSIONS principal
  components; above HDBSCAN_FIT_LIMIT points it is fitted on a seeded sample and the others join the cluster of
  their nearest sampled neighbour (or noise when that neighbour is noise).
- The map is the first two principal components (PCA, seeded): distances on it are only indicative.
- Names: an LLM (a chosen chat endpoint, through the call engine's clients and account limits) reads a sample of
  each cluster's reasonings and proposes a name and a description, shown beside the sample they came from.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
from django.db import transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from transcripts import engine
from transcripts.models import Transcript

from . import search
from .models import Cluster, ClusterMember, ClusterRun

log = logging.getLogger(__name__)

PCA_DIMENSIONS = 10
HDBSCAN_FIT_LIMIT = 20000
KMEANS_FULL_LIMIT = 20000
SAMPLE_SIZE = 8  # reasonings per cluster shown to the namer (and beside its name)
SAMPLE_CHARS = 600


def _progress(run: ClusterRun, percent: int, message: str) -> None:
    ClusterRun.objects.filter(pk=run.pk).update(progress=percent, message=message)


def labels_for(vectors: np.ndarray, *, algorithm: str, seed: int, n_clusters: int | None = None,
               min_cluster_size: int = 5) -> np.ndarray:
    """Cluster labels of the rows (pure: the planted-structure test calls it directly too)."""
    from sklearn.cluster import HDBSCAN, KMeans, MiniBatchKMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    if algorithm == ClusterRun.Algorithm.KMEANS:
        k = max(1, min(n_clusters or 8, len(vectors)))
        # Three k-means++ starts, the best kept: one start split the planted themes worse (ARI 0.65 against 0.93).
        # Above KMEANS_FULL_LIMIT, mini-batches: 100k reasonings in 3 s instead of 68 s at load 11, the same
        # partition of separated groups (ARI 1.0 against the planted centres; docs/benchmarks.md, "Discovery").
        if len(vectors) > KMEANS_FULL_LIMIT:
            return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit_predict(vectors)
        return KMeans(n_clusters=k, random_state=seed, n_init=3).fit_predict(vectors)
    reduced = PCA(n_components=min(PCA_DIMENSIONS, *vectors.shape), random_state=seed).fit_transform(vectors)
    size = max(2, min(min_cluster_size, len(vectors)))
    if len(reduced) <= HDBSCAN_FIT_LIMIT:
        return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(reduced)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(reduced), HDBSCAN_FIT_LIMIT, replace=False))
    sample_labels = HDBSCAN(min_cluster_size=size, copy=True).fit_predict(reduced[sample])
    nearest = NearestNeighbors(n_neighbors=1).fit(reduced[sample]).kneighbors(reduced, return_distance=False)[:, 0]
    return sample_labels[nearest]


def project(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    points = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    return points if points.shape[1] == 2 else np.hstack([points, np.zeros((len(points), 1))])


def compute(run_id: int) -> None:
    """Compute a run (in a worker). A run already done is left alone; a failed step marks the run failed."""
    run = ClusterRun.objects.get(pk=run_id)
    if run.status == ClusterRun.Status.DONE:
        return
    started = time.monotonic()
    ClusterRun.objects.filter(pk=run.pk).update(status=ClusterRun.Status.RUNNING, progress=1,
                                                message="Reading the vectors")
    try:
        _compute(run)
    except Exception as exc:
        log.exception("cluster run %s failed", run.pk)
        ClusterRun.objects.filter(pk=run.pk).update(status=ClusterRun.Status.FAILED, message=str(exc)[:500],
                                                    finished_at=timezone.now())
        return
    ClusterRun.objects.filter(pk=run.pk).update(
        status=ClusterRun.Status.DONE, progress=100, message="", finished_at=timezone.now(),
        seconds=time.monotonic() - started)


def _compute(run: ClusterRun) -> None:
    found = search.load(run.endpoint, transcript_ids=run.transcript_ids)
    if len(found.ids) < 2:
        raise ValueError("Fewer than two of these transcripts have an embedded reasoning: embed them first.")
    _progress(run, 20, f"Clustering {len(found.ids)} reasonings")
    # One BLAS/OpenMP thread: their spinning threads made one k-means start on 100k reasonings 3.7x slower on a
    # busy machine (36 s against 9.6 s at load 7; docs/benchmarks.md, "Discovery").
    with threadpool_limits(1):
        labels = labels_for(found.vectors, algorithm=run.algorithm, seed=run.seed, n_clusters=run.n_clusters,
                            min_cluster_size=run.min_cluster_size)
        _progress(run, 60, "Drawing the map")
        points = project(found.vectors, run.seed)
    _progress(run, 75, "Saving the clusters")
    rng = np.random.default_rng(run.seed)
    with transaction.atomic():
        ClusterMember.objects.filter(run=run).delete()
        Cluster.objects.filter(run=run).delete()
        ClusterMember.objects.bulk_create(
            (ClusterMember(run=run, transcript_id=int(t), label=int(label), x=float(x), y=float(y))
             for t, label, (x, y) in zip(found.ids, labels, points, strict=True)),
            batch_size=5000,
        )
        clusters = []
        for label in np.unique(labels):
            members = found.ids[labels == label]
            sample = rng.choice(members, min(SAMPLE_SIZE, len(members)), replace=False)
            clusters.append(Cluster(run=run, label=int(label), size=len(members),
                                    sample=sorted(int(t) for t in sample)))
        Cluster.objects.bulk_create(clusters)
        ClusterRun.objects.filter(pk=run.pk).update(n_points=len(found.ids))
    if run.naming_endpoint_id:
        named = [c for c in Cluster.objects.filter(run=run) if not c.is_noise]
        for i, cluster in enumerate(named):
            _progress(run, 80 + 19 * i // max(1, len(named)), f"Naming cluster {i + 1} of {len(named)}")
            name_cluster(cluster)


NAMING_PROMPT = """Below are {n} chains of thought that an embedding model placed in one cluster.
What rationalisation or stance do they share? Answer in exactly two lines:
Name: <at most six words>
Description: <one sentence>

{samples}"""


def name_cluster(cluster: Cluster) -> None:
    """Ask the run's naming endpoint (through the engine) for a name and description of the cluster's sample.
    The reply is untrusted text: stored as text, shown escaped."""
    endpoint = cluster.run.naming_endpoint
    texts = dict(Transcript.objects.filter(pk__in=cluster.sample).values_list("pk", "reasoning"))
    samples = "\n\n".join(f"{i}. {texts.get(t, '')[:SAMPLE_CHARS]}" for i, t in enumerate(cluster.sample, start=1))
    prompt = NAMING_PROMPT.format(n=len(cluster.sample), samples=samples)

    async def ask(calls: engine.Calls):
        reply = await calls.chat(messages=[{"role": "user", "content": prompt}], max_tokens=80, temperature=0,
                                 seed=cluster.run.seed)
        return engine.first_choice(reply).message.content or ""

    try:
        text = engine.call(endpoint, ask)
    except Exception as exc:  # noqa: BLE001 - a run without names is still a run
        log.warning("naming cluster %s failed: %s", cluster.pk, exc)
        return
    name = re.search(r"name\s*:\s*(.+)", text, re.IGNORECASE)
    description = re.search(r"description\s*:\s*(.+)", text, re.IGNORECASE | re.DOTALL)
    cluster.name = (name.group(1) if name else text.strip().splitlines()[0] if text.strip() else "")[:200].strip()
    cluster.description = (description.group(1) if description else text)[:2000].strip()
    cluster.save(update_fields=["name", "description"])
