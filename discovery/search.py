"""Nearest reasonings by meaning: cosine similarity between length-1 vectors (a dot product).

The vectors of an embedding endpoint version are read once per process into one float32 matrix and kept
(reloaded when new vectors arrive), so a search is one matrix-vector product: ~1.5 GB and ~0.1 s for a million
384-dimension vectors on two cores (docs/benchmarks.md). Any database (PostgreSQL or SQLite) serves it."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.db.models import Max

from transcripts.models import Endpoint

from .models import TextVector, TranscriptText

KIND = TranscriptText.Kind.REASONING
DEFAULT_NEIGHBOURS = 50
MAX_NEIGHBOURS = 1000


@dataclass
class Matrix:
    ids: np.ndarray  # transcript ids, ascending
    vectors: np.ndarray  # (n, d) float32, row i is ids[i]'s
    stamp: tuple


_cache: dict[tuple[int, str], Matrix] = {}
_lock = threading.Lock()


def _links(endpoint: Endpoint, kind: str):
    return TranscriptText.objects.filter(endpoint=endpoint, kind=kind, vector__status=TextVector.Status.DONE)


def _stamp(endpoint: Endpoint, kind: str) -> tuple:
    links = _links(endpoint, kind)
    return (links.count(), links.aggregate(m=Max("pk"))["m"])


def load(endpoint: Endpoint, kind: str = KIND, transcript_ids=None, chunk: int = 20000) -> Matrix:
    """The done vectors of `kind` texts (optionally of these transcripts only), read in chunks of ids."""
    links = _links(endpoint, kind).order_by("transcript_id")
    if transcript_ids is not None:
        wanted = sorted(set(transcript_ids))
        parts = [list(links.filter(transcript_id__in=wanted[i:i + chunk]).values_list(
            "transcript_id", "vector__vector")) for i in range(0, len(wanted), chunk)]
        rows = [row for part in parts for row in part]
    else:
        rows = list(links.values_list("transcript_id", "vector__vector").iterator(chunk_size=chunk))
    if not rows:
        return Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), ())
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    blob = b"".join(bytes(r[1]) for r in rows)
    vectors = np.frombuffer(blob, dtype="<f4").reshape(len(rows), -1)
    return Matrix(ids, vectors, ())


def matrix(endpoint: Endpoint, kind: str = KIND) -> Matrix:
    """Every done vector of the endpoint version, cached in this process while no new one arrives."""
    key = (endpoint.pk, kind)
    stamp = _stamp(endpoint, kind)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.stamp == stamp:
            return cached
    loaded = load(endpoint, kind)
    loaded.stamp = stamp
    with _lock:
        _cache[key] = loaded
    return loaded


def nearest(query: np.ndarray, endpoint: Endpoint, n: int = DEFAULT_NEIGHBOURS, *, among=None,
            exclude: int | None = None, kind: str = KIND) -> list[tuple[int, float]]:
    """The `n` transcripts whose `kind` text is most like `query`: (transcript id, cosine similarity), best first.
    `among`: only these transcript ids (a filter's result); `exclude`: leave this transcript out."""
    found = matrix(endpoint, kind)
    if not len(found.ids):
        return []
    scores = found.vectors @ np.asarray(query, dtype=np.float32)
    keep = np.ones(len(found.ids), dtype=bool)
    if among is not None:
        keep &= np.isin(found.ids, np.fromiter(among, dtype=np.int64))
    if exclude is not None:
        keep &= found.ids != exclude
    candidates = np.flatnonzero(keep)
    n = min(n, len(candidates))
    if n == 0:
        return []
    best = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(found.ids[i]), float(scores[i])) for i in best]


def vector_of(transcript_id: int, endpoint: Endpoint, kind: str = KIND) -> np.ndarray | None:
    link = _links(endpoint, kind).filter(transcript_id=transcript_id).values_list("vector__vector", flat=True).first()
    return None if link is None else np.frombuffer(bytes(link), dtype="<f4")
