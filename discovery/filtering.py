"""What the transcript filter (browse/filters.py) asks of discovery: a cluster's members, and the reasonings
nearest to a transcript's or to a free text ("more like this"). Both return transcript ids, so the list, the
exports and "queue these" work on them like on any other filter."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.core.exceptions import ValidationError

from transcripts.models import Endpoint

from . import embedding, throttle
from .models import ClusterMember, ClusterRun

if TYPE_CHECKING:
    import numpy as np

DEFAULT_NEIGHBOURS = 50  # "more like this" shows this many unless asked for more
MAX_NEIGHBOURS = 1000
CLUSTER_VALUE = re.compile(r"^(\d{1,12}):(-?\d{1,6})$")


def parse_cluster(value: str) -> tuple[int, int]:
    """`run:label` (e.g. `12:3`; `12:-1` is the run's noise)."""
    match = CLUSTER_VALUE.match(value.strip())
    if not match:
        raise ValidationError("A cluster is written run:label, e.g. 12:3.")
    return int(match.group(1)), int(match.group(2))


def cluster_members(value: str):
    """The ids of a cluster's transcripts, as a subquery."""
    run, label = parse_cluster(value)
    return ClusterMember.objects.filter(run_id=run, label=label).values("transcript_id")


def cluster_value(run: ClusterRun, label: int) -> str:
    return f"{run.pk}:{label}"


def like_endpoint() -> Endpoint | None:
    return embedding.current_endpoint()


def nearest_to_transcript(transcript_id: int, n: int, among=None) -> list[tuple[int, float]]:
    """The `n` reasonings most like the transcript's own (itself left out), among `among` when given; for a
    transcript without a chain of thought (an imported answer, CoT off), the `n` answers most like its answer.
    The search (and numpy) is imported here: the transcript filter loads this module in every process's URL check
    (analysis/__init__.py says why that matters)."""
    from . import search

    endpoint = like_endpoint()
    if endpoint is None:
        return []
    for kind in embedding.KINDS:
        query = search.vector_of(transcript_id, endpoint, kind)
        if query is not None:
            return search.nearest(query, endpoint, n, among=among, exclude=transcript_id, kind=kind)
    return []


def nearest_to_text(text: str, n: int, among=None) -> list[tuple[int, float]]:
    """The `n` reasonings most like a free text (a description, or a span highlighted in a transcript)."""
    from . import search

    endpoint = like_endpoint()
    if endpoint is None or not text.strip():
        return []
    return search.nearest(text_vector(text, endpoint), endpoint, n, among=among)


def text_vector(text: str, endpoint: Endpoint) -> np.ndarray:
    """The vector of a searched text: from the cache when it was searched lately (the list's next page, its
    export, its queue), else from the embedder, counted against the user's allowance (throttle.py)."""
    key = f"discovery:text-vector:{endpoint.pk}:{embedding.text_hash(text)}"
    kept = cache.get(key)
    if kept is not None:
        return embedding.unpack(kept)
    throttle.count_text_search()
    vector = embedding.embed_now(text, endpoint)
    cache.set(key, vector.tobytes(), throttle.TEXT_VECTOR_SECONDS)
    return vector
