"""Reports: results computed from many rows (bootstraps, model fits, scans of an experiment's verdicts), kept in
Django's cache (settings.CACHES: a cache the web and worker processes share) and, when they cost more than a
request may spend, computed in the background by a Celery worker: stale-while-revalidate.

A report is a function registered here under a name (`@report`), whose arguments are plain ids, so that a task
can call it by name with JSON arguments, with a fingerprint function of the same arguments: whatever identifies
the data it reads (chosen versions, thresholds, counts and latest timestamps of the rows read). A fingerprint
must be cheap (index lookups): the request computes it every time, and a result is current only while the
fingerprint it was computed from is.

`get(name, **args)` never computes a background report in the request:
- a result for the current fingerprint: it is returned;
- only an older result: it is returned (`updating`), and one recomputation is enqueued;
- none: nothing to show (`computing`, the page polls), and one recomputation is enqueued.
"One": enqueuing takes a lock per (report, arguments) with `cache.add`, held until the task ends, so twenty
requests start one task. A task that fails keeps its error for that fingerprint, so the page shows it instead of
polling forever; it is tried again after ERROR_TIMEOUT or when the inputs change. Reports cheap enough for a
request (index lookups on small sets) are registered `background=False` and computed in the request on a miss.

Warm ahead: a new verdict (judging.results.judge) or label (judging.annotation.consensus) calls
`warm("experiment"|"queue", id)`, which refreshes that experiment's or queue's reports once, DEBOUNCE seconds
later, so that they are ready when someone looks: the reports always shown for it (`warm=True`) and the ones
viewed lately (`watch`).

Reports live here, at the top of judging, because every room registers some: results (metrics, comparisons),
annotation (queue_stats, spans) and validity (gold, judge_agreement, human_calibration).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from transcripts.models import Experiment, VerdictCount

from .models import JudgeScore, RubricVersion

logger = logging.getLogger(__name__)

TIMEOUT = 7 * 24 * 3600  # seconds; a result whose inputs did not change stays valid, this only frees space
LOCK_TIMEOUT = 900  # a recomputation lost with its worker is enqueued again by the next view after this
ERROR_TIMEOUT = 300  # a failed report is tried again after this (or at once when its inputs change)
DEBOUNCE = 10  # seconds between warm-ahead refreshes of one experiment's or queue's reports
WATCHED = 30  # reports of one experiment or queue remembered as viewed, newest first
# The report arguments that name what a report reads, and what a change to it is called in `warm`.
SUBJECTS = {"experiment": "experiment", "other": "experiment", "queue": "queue"}


@dataclass(frozen=True)
class Report:
    name: str
    compute: Callable[..., Any]
    fingerprint: Callable[..., object]
    background: bool
    warm: str | None  # its one argument, when it is refreshed whenever that experiment or queue changes
    max_age: int | None  # seconds after which a result counts as old even with the same fingerprint


REPORTS: dict[str, Report] = {}
# The modules that register reports, imported before a report is looked up (a worker may not have imported them).
REPORT_MODULES = (
    "judging.annotation.queue_stats", "judging.annotation.spans", "judging.results.comparisons",
    "judging.results.metrics", "judging.validity.gold", "judging.validity.human_calibration",
    "judging.validity.judge_agreement",
)


def report(name: str, *, fingerprint: Callable[..., object], background: bool = True, warm: str | None = None,
           max_age: int | None = None) -> Callable:
    """Register `compute` (keyword arguments: plain ids) as the report `name`. `warm`: the name of its only
    argument (one of SUBJECTS) when it is refreshed after every change of that experiment or queue, viewed or
    not (the reports a results or agreement page always shows)."""
    def register(compute: Callable) -> Callable:
        REPORTS[name] = Report(name, compute, fingerprint, background, warm, max_age)
        return compute
    return register


@dataclass(frozen=True)
class Entry:
    digest: str  # of the fingerprint the value was computed from
    value: Any
    computed_at: datetime


@dataclass(frozen=True)
class Result:
    """What a page shows of a report: its value when there is one, and how current it is."""

    value: Any = None
    computed_at: datetime | None = None
    current: bool = False  # computed from the inputs as they are now
    error: str = ""  # the current inputs' computation failed
    queued_at: datetime | None = None  # when the recomputation under way was asked for

    @property
    def has_value(self) -> bool:
        return self.computed_at is not None

    @property
    def state(self) -> str:
        """ready, updating (an older value shown), computing (none yet) or failed."""
        if self.current:
            return "ready"
        if self.error:
            return "failed"
        return "updating" if self.has_value else "computing"

    @property
    def pending(self) -> bool:
        """A worker is (re)computing it: a page showing it asks again shortly."""
        return self.state in ("updating", "computing")


def _registered() -> dict[str, Report]:
    for module in REPORT_MODULES:  # imported once; then a lookup in sys.modules each
        importlib.import_module(module)
    return REPORTS


def _report(name: str) -> Report:
    return _registered()[name]


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def _key(name: str, args: dict) -> str:
    return f"report:{name}:{_digest(json.dumps(args, sort_keys=True))}"


def _is_current(report: Report, entry: Entry | None, digest: str) -> bool:
    if entry is None or entry.digest != digest:
        return False
    return report.max_age is None or timezone.now() - entry.computed_at < timedelta(seconds=report.max_age)


def peek(name: str, **args) -> Result:
    """What the report's cache holds for these arguments and how current it is; nothing is enqueued."""
    return _peek(_report(name), _key(name, args), args)[0]


def _peek(report: Report, key: str, args: dict) -> tuple[Result, str]:
    digest = _digest(report.fingerprint(**args))
    entry = cache.get(key)
    if _is_current(report, entry, digest):
        return Result(entry.value, entry.computed_at, current=True), digest
    old = (entry.value, entry.computed_at) if entry else (None, None)
    error = cache.get(f"{key}:error")
    if error is not None and error[0] == digest:
        return Result(*old, error=error[1]), digest
    return Result(*old, queued_at=cache.get(f"{key}:lock")), digest


def get(name: str, **args) -> Result:
    """The report's result for these arguments, as described in the module docstring."""
    report, key = _report(name), _key(name, args)
    result, digest = _peek(report, key, args)
    if result.current or result.error:
        return result
    if not report.background:
        entry = _compute(report, key, args, digest)
        return Result(entry.value, entry.computed_at, current=True)
    _watch(name, args)
    if enqueue(name, args):
        return Result(result.value, result.computed_at, queued_at=timezone.now())
    return result


def value(name: str, **args) -> Any:
    """A report registered background=False: its value, computed in this request when it is not current."""
    assert not _report(name).background, f"{name} is computed in the background: read it with get()"
    return get(name, **args).value


def _compute(report: Report, key: str, args: dict, digest: str) -> Entry:
    started = timezone.now()  # the age shown is that of the data read, which is read from here on
    entry = Entry(digest, report.compute(**args), started)
    cache.set(key, entry, TIMEOUT)
    return entry


def enqueue(name: str, args: dict, *, countdown: float = 0) -> bool:
    """Ask a worker to bring the report up to date, unless that was asked already and is not done."""
    key = _key(name, args)
    if not cache.add(f"{key}:lock", timezone.now(), LOCK_TIMEOUT):
        return False
    from .tasks import compute_report

    # After the caller's transaction: the worker must see the change that made it ask.
    transaction.on_commit(lambda: compute_report.apply_async((name, args), countdown=countdown))
    return True


def refresh(name: str, args: dict) -> None:
    """Bring the report up to date (the task's body; tests call it to run a report synchronously). A failure is
    kept for the fingerprint it happened at; inputs that moved during the computation ask for another one."""
    report = _report(name)
    key = _key(name, args)
    try:
        digest = _digest(report.fingerprint(**args))
        if not _is_current(report, cache.get(key), digest):
            try:
                _compute(report, key, args, digest)
            except Exception as exc:
                cache.set(f"{key}:error", (digest, f"{type(exc).__name__}: {exc}"), ERROR_TIMEOUT)
                raise
            cache.delete(f"{key}:error")
    finally:
        cache.delete(f"{key}:lock")
    if _digest(report.fingerprint(**args)) != digest:
        enqueue(name, args, countdown=DEBOUNCE)


def _subjects(args: dict) -> list[str]:
    return [f"{SUBJECTS[arg]}:{pk}" for arg, pk in sorted(args.items()) if arg in SUBJECTS]


def _watch(name: str, args: dict) -> None:
    """Remember that this report was viewed, so that changes to what it reads refresh it ahead of the next view.
    A read per view; a write only when it is new (two views racing may drop one: it is then refreshed on view)."""
    wanted = [name, args]
    for subject in _subjects(args):
        watched = cache.get(f"watch:{subject}", [])
        if wanted not in watched:
            cache.set(f"watch:{subject}", [wanted, *watched][:WATCHED], TIMEOUT)


def warm(kind: str, pk: int) -> None:
    """The data of an experiment or queue changed: once the caller's transaction commits (a rolled-back change
    schedules nothing, and takes no debounce slot), refresh its reports in DEBOUNCE seconds (once for every change
    until then; a change after that schedules the next refresh, so the last change is always seen)."""
    transaction.on_commit(lambda: _schedule_warm(kind, pk))


def _schedule_warm(kind: str, pk: int) -> None:
    if cache.add(f"warm:{kind}:{pk}", True, DEBOUNCE):
        from .tasks import warm_reports

        warm_reports.apply_async((kind, pk), countdown=DEBOUNCE)


def warm_now(kind: str, pk: int) -> int:
    """Enqueue the refresh of every report of this experiment or queue that is always warm or was viewed.
    Returns how many were enqueued (the others are current, or already on their way)."""
    subject = f"{kind}:{pk}"
    wanted = [[name, {report.warm: pk}] for name, report in _registered().items()
              if report.background and report.warm and SUBJECTS[report.warm] == kind]
    wanted += [entry for entry in cache.get(f"watch:{subject}", []) if entry not in wanted]
    enqueued = 0
    for name, args in wanted:
        if name in REPORTS and _is_stale(name, args):
            enqueued += enqueue(name, args)
    return enqueued


def _is_stale(name: str, args: dict) -> bool:
    report = _report(name)
    try:
        digest = _digest(report.fingerprint(**args))
    except Exception:  # what it was about is gone (a deleted queue): nothing to refresh
        logger.info("report %s %s: no fingerprint, not refreshed", name, args, exc_info=True)
        return False
    return not _is_current(report, cache.get(_key(name, args)), digest)


# ---- fingerprints ------------------------------------------------------------------------------------------


def done_scores_fingerprint(versions: Iterable[RubricVersion | int | None]) -> tuple:
    """(version id, time of its latest done verdict) per version: one descent of the partial index
    judgescore_version_done each. A done verdict never goes back to waiting (a new judgement is a new version)
    and is deleted only with its transcript, so new verdicts move this and deletions move the transcript counts
    the callers add."""
    ids = sorted({getattr(version, "pk", version) for version in versions if version is not None})
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


def experiment_fingerprint(experiment: Experiment | int) -> tuple:
    """The experiment's thresholds and its verdict cache summed over its VerdictCount rows (one per condition ×
    question, maintained by every writer and by transcript deletes): moves when a transcript is done or deleted
    or its cached verdict changes, without reading the transcript table."""
    if not isinstance(experiment, Experiment):
        experiment = Experiment.objects.only("aligned_threshold", "coherent_threshold").get(pk=experiment)
    sums = VerdictCount.objects.filter(experiment=experiment).aggregate(
        *(Sum(field) for field in ("done", "judged", "n", "misaligned", "aligned_sum", "coherent_sum"))
    )
    return (experiment.pk, experiment.aligned_threshold, experiment.coherent_threshold, *sums.values())
