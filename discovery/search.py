"""Nearest reasonings by meaning: cosine similarity between length-1 vectors (a dot product).

The vectors of an embedding endpoint version are read once per process into one float32 matrix and kept; each
search first catches up with what arrived since (links newer than the newest one read, and links read while
their vector was still pending that are done now: two small indexed queries), so a search is those queries, one
matrix-vector product and a partial sort: ~1.5 GB per million 384-dimension vectors in each process that
searches (docs/benchmarks.md, "Discovery"). Any database (PostgreSQL or SQLite) serves it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Max
from threadpoolctl import threadpool_limits

from transcripts.models import Endpoint

from .models import TextVector, TranscriptText

KIND = TranscriptText.Kind.REASONING
# Links are numbered when inserted but become visible when their transaction commits, not always in that order:
# the newest TAIL links are read again at each catch-up (those already read are skipped).
TAIL = 1000


@dataclass
class Matrix:
    ids: np.ndarray  # transcript ids
    vectors: np.ndarray  # (n, d) float32, row i is ids[i]'s
    newest: int = 0  # the newest link (TranscriptText id) considered
    waiting: set[int] = field(default_factory=set)  # links considered whose vector was not done yet
    tail: set[int] = field(default_factory=set)  # links read among the newest TAIL


_cache: dict[tuple[int, str], Matrix] = {}
_lock = threading.Lock()


def _links(endpoint: Endpoint, kind: str):
    return TranscriptText.objects.filter(endpoint=endpoint, kind=kind, vector__status=TextVector.Status.DONE)


def _matrix(rows: list[tuple[int, bytes]], dimensions: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, dimensions), dtype=np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    blob = b"".join(bytes(r[1]) for r in rows)
    return ids, np.frombuffer(blob, dtype="<f4").reshape(len(rows), -1)


def load(endpoint: Endpoint, kind: str = KIND, *, transcript_ids, chunk: int = 20000) -> Matrix:
    """The done vectors of `kind` texts of these transcripts, read in chunks of ids (a cluster run's)."""
    links = _links(endpoint, kind).order_by("transcript_id")
    wanted = sorted(set(transcript_ids))
    rows = [row for i in range(0, len(wanted), chunk) for row in links.filter(
        transcript_id__in=wanted[i:i + chunk]).values_list("transcript_id", "vector__vector")]
    return Matrix(*_matrix(rows))


def _read(endpoint: Endpoint, kind: str, chunk: int = 20000) -> Matrix:
    """Every done vector of the endpoint version up to the newest link now, and the links still waiting (one
    query: a vector done meanwhile is either read here or waiting, never both)."""
    every = TranscriptText.objects.filter(endpoint=endpoint, kind=kind)
    newest = every.aggregate(m=Max("pk"))["m"] or 0
    rows, waiting = [], set()
    for pk, transcript, status, blob in every.filter(pk__lte=newest).order_by("transcript_id").values_list(
            "pk", "transcript_id", "vector__status", "vector__vector").iterator(chunk_size=chunk):
        if status == TextVector.Status.DONE:
            rows.append((transcript, blob))
        else:
            waiting.add(pk)
    tail = set(every.filter(pk__gt=newest - TAIL, pk__lte=newest).values_list("pk", flat=True))
    return Matrix(*_matrix(rows), newest=newest, waiting=waiting, tail=tail)


def _caught_up(endpoint: Endpoint, kind: str, old: Matrix) -> Matrix:
    """`old` with the vectors that arrived since it was read appended (the same object when none did). A done
    vector stays done, so a link is appended once: when it is first seen done."""
    every = TranscriptText.objects.filter(endpoint=endpoint, kind=kind)
    fresh = {pk: status for pk, status in every.filter(pk__gt=old.newest - TAIL).values_list("pk", "vector__status")
             if pk not in old.tail}
    now_done = set(_links(endpoint, kind).filter(pk__in=old.waiting).values_list("pk", flat=True)) \
        if old.waiting else set()
    if not fresh and not now_done:
        return old
    ready = now_done | {pk for pk, status in fresh.items() if status == TextVector.Status.DONE}
    ids, vectors = _matrix(list(_links(endpoint, kind).filter(pk__in=ready).values_list(
        "transcript_id", "vector__vector")), old.vectors.shape[1] if old.vectors.size else 0)
    newest = max([old.newest, *fresh])
    return Matrix(
        np.concatenate([old.ids, ids]),
        np.concatenate([old.vectors, vectors]) if old.vectors.size and vectors.size else (
            vectors if vectors.size else old.vectors),
        newest=newest,
        waiting=(old.waiting - now_done) | {pk for pk, status in fresh.items() if status != TextVector.Status.DONE},
        tail={pk for pk in old.tail | set(fresh) if pk > newest - TAIL},
    )


def matrix(endpoint: Endpoint, kind: str = KIND) -> Matrix:
    """Every done vector of the endpoint version, kept in this process and caught up at each call."""
    key = (endpoint.pk, kind)
    with _lock:
        cached = _cache.get(key)
    current = _read(endpoint, kind) if cached is None else _caught_up(endpoint, kind, cached)
    if current is not cached:
        with _lock:
            _cache[key] = current
    return current


def nearest(query: np.ndarray, endpoint: Endpoint, n: int, *, among=None,
            exclude: int | None = None, kind: str = KIND) -> list[tuple[int, float]]:
    """The `n` transcripts whose `kind` text is most like `query`: (transcript id, cosine similarity), best first.
    `among`: only these transcript ids (a filter's result); `exclude`: leave this transcript out."""
    found = matrix(endpoint, kind)
    if not len(found.ids):
        return []
    with threadpool_limits(1):  # OpenBLAS's second thread, spinning on a busy machine, made it 1.4× slower
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
