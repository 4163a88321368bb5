"""Statistics computed once per change of their inputs and kept in Django's cache (settings.CACHES: Redis in
production, so every web worker shares a result).

A result is stored under a digest of its inputs' fingerprint: whatever identifies the data it was computed from
(chosen versions, thresholds, counts and latest timestamps of the rows read). When the data changes the
fingerprint changes, so the page computes a fresh result under a new key and an old one is never shown as
current; unused keys simply expire. A fingerprint must be cheap (index lookups), or the cache saves nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.core.cache import cache
from django.db.models import Count, Max, Sum

from transcripts.models import Experiment, VerdictCount

from .models import JudgeScore, RubricVersion

T = TypeVar("T")
TIMEOUT = 7 * 24 * 3600  # seconds; a result whose inputs did not change stays valid, this only frees memory
_MISSING = object()  # a computed None (e.g. no best threshold pair) is a result too, not a miss


def cached(name: str, fingerprint: object, compute: Callable[[], T], *, timeout: int = TIMEOUT) -> T:
    """compute()'s result for this fingerprint: from the cache when it was computed before, else computed now
    and stored. `fingerprint` is any value with a stable repr (tuples of ids, numbers, datetimes)."""
    key = f"{name}:{hashlib.sha256(repr(fingerprint).encode()).hexdigest()}"
    value = cache.get(key, _MISSING)
    if value is _MISSING:
        value = compute()
        cache.set(key, value, timeout)
    return value


def done_scores_fingerprint(versions: Iterable[RubricVersion | None]) -> tuple:
    """(version id, time of its latest done verdict) per version: one descent of the partial index
    judgescore_version_done each. A done verdict never goes back to waiting (a new judgement is a new version)
    and is deleted only with its transcript, so new verdicts move this and deletions move the transcript counts
    the callers add."""
    ids = sorted({version.pk for version in versions if version is not None})
    return tuple(
        (pk, JudgeScore.objects.filter(rubric_version=pk, status=JudgeScore.Status.DONE)
         .aggregate(latest=Max("finished_at"))["latest"])
        for pk in ids
    )


def labels_fingerprint(labels) -> tuple:
    """Count, latest id and latest edit of a set of labels (a queue's): moves when one is added, edited or
    removed. The queue's labels only, through the (item → queue) index: proportional to the queue, not the
    transcript table."""
    row = labels.aggregate(n=Count("pk"), last_id=Max("pk"), edited=Max("updated_at"))
    return row["n"], row["last_id"], row["edited"]


def experiment_fingerprint(experiment: Experiment) -> tuple:
    """The experiment's thresholds and its verdict cache summed over its VerdictCount rows (one per condition ×
    question, maintained by every writer and by transcript deletes): moves when a transcript is done or deleted
    or its cached verdict changes, without reading the transcript table."""
    sums = VerdictCount.objects.filter(experiment=experiment).aggregate(
        *(Sum(field) for field in ("done", "judged", "n", "misaligned", "aligned_sum", "coherent_sum"))
    )
    return (experiment.pk, experiment.aligned_threshold, experiment.coherent_threshold, *sums.values())
