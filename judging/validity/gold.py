"""Gold suites: a frozen set of adjudicated transcripts, the judges run on it, and the dated history of their
agreement with gold, with a drift warning.

Gold comes from a queue: the persona category of each adjudicated item (the researcher's Adjudication), and the
misaligned flag of each item whose auditors' flags have a majority (`human_calibration.human_reference`, the
queue's `majority_share` rule). A run is one judge on the suite: an aligned + coherent version pair for the
flag, a persona version for the category. Its figures are computed once all its verdicts on the suite are in:
Cohen's κ and accuracy against gold, each with a 95% percentile bootstrap interval over gold items. Drift: a run
whose κ is below the lower end of the previous recorded run's interval (same suite and kind) is flagged.
A run's figures are stored once (its bootstrap never runs on a page view again); the suite's summary is cached
(judging.reports) for as long as the suite exists: its items are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from analysis.bootstrap import REPLICATES, percentile_interval, resamples
from transcripts.models import Experiment, Transcript

from ..annotation.agreement import count_tables, kappa_of_tables
from ..models import Adjudication, AnnotationQueue, GoldItem, GoldRun, GoldSuite, JudgeScore
from ..reports import report
from ..results.judge import enqueue
from ..verdicts import Versions
from .human_calibration import human_reference
from .judge_agreement import with_judge_flag

UNFINISHED = (JudgeScore.Status.PENDING, JudgeScore.Status.RUNNING)


def _flag_consensus(queue: AnnotationQueue) -> dict[int, bool]:
    """transcript id → the auditors' majority misaligned flag in this queue (the calibration page's reference)."""
    flags: dict[int, bool] = {}
    for experiment in Experiment.objects.filter(transcripts__queue_items__queue=queue).distinct():
        flags.update(human_reference(queue, experiment)[0])
    return flags


@transaction.atomic
def freeze(*, queue: AnnotationQueue, name: str, description: str = "", user=None) -> GoldSuite:
    """A new suite from the queue's adjudicated categories and majority flags, copied as they are now."""
    categories = dict(Adjudication.objects.filter(item__queue=queue).values_list("item__transcript_id", "category"))
    flags = _flag_consensus(queue)
    suite = GoldSuite.objects.create(name=name, description=description, source_queue=queue, created_by=user)
    GoldItem.objects.bulk_create([
        GoldItem(suite=suite, transcript_id=t, category_id=categories.get(t), misaligned=flags.get(t))
        for t in sorted(set(categories) | set(flags))
    ])
    return suite


def request_run(suite: GoldSuite, versions: Versions) -> list[GoldRun]:
    """Run a judge on the suite: queue its missing verdicts (failed ones are tried again) and open a run per
    kind the versions cover (a run that exists is reused: a version's agreement with gold is recorded once)."""
    runs = []
    if versions.aligned and versions.coherent:
        runs.append(GoldRun.objects.get_or_create(
            suite=suite, kind=GoldRun.Kind.FLAG, aligned_version=versions.aligned,
            coherent_version=versions.coherent, persona_version=None,
        )[0])
    if versions.persona:
        runs.append(GoldRun.objects.get_or_create(
            suite=suite, kind=GoldRun.Kind.CATEGORY, aligned_version=None, coherent_version=None,
            persona_version=versions.persona,
        )[0])
    chosen = [v for run in runs for v in run.versions]
    enqueue(Transcript.objects.filter(gold_items__suite=suite).select_related("question"), chosen,
            retry_failed=True)
    return runs


def is_complete(run: GoldRun) -> bool:
    """No verdict of the run's versions on the suite is still waiting or being asked."""
    return not JudgeScore.objects.filter(
        rubric_version__in=run.versions, transcript__gold_items__suite=run.suite_id, status__in=UNFINISHED
    ).exists()


def gold_pairs(run: GoldRun) -> tuple[list[tuple[str, str]], int]:
    """(gold, judge) label pairs over the suite's items with gold of the run's kind, and how many of those
    items the judge gave no usable verdict on (not judged, failed, refusal, unsure)."""
    items = GoldItem.objects.filter(suite=run.suite_id)
    if run.kind == GoldRun.Kind.FLAG:
        gold = dict(items.filter(misaligned__isnull=False).values_list("transcript_id", "misaligned"))
        judged = dict(
            with_judge_flag(Transcript.objects.filter(pk__in=gold), run.aligned_version, run.coherent_version)
            .filter(flag__isnull=False).values_list("pk", "flag")
        )
    else:
        gold = dict(items.filter(category__isnull=False).values_list("transcript_id", "category__key"))
        judged = dict(JudgeScore.objects.filter(
            rubric_version=run.persona_version, transcript_id__in=gold, status=JudgeScore.Status.DONE,
            category__isnull=False,
        ).values_list("transcript_id", "category__key"))
    pairs = [(str(gold[t]), str(judged[t])) for t in sorted(gold) if t in judged]
    return pairs, len(gold) - len(pairs)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None


def _accuracy(tables: np.ndarray) -> np.ndarray:
    return np.trace(tables, axis1=-2, axis2=-1) / tables.sum(axis=(-2, -1))


def _estimate(statistic, gold: np.ndarray, judge: np.ndarray, n_boot: int, seed: int) -> Estimate:
    """The statistic of the (gold × judge) count table and its 95% percentile bootstrap interval (items resampled
    with replacement, analysis.bootstrap)."""
    if len(gold) < 2:
        return Estimate(None, None, None)
    labels = np.union1d(gold, judge)
    gold_codes, judge_codes = np.searchsorted(labels, gold), np.searchsorted(labels, judge)
    value = statistic(count_tables(gold_codes, judge_codes, len(labels)))
    if not np.isfinite(value):
        return Estimate(None, None, None)
    rng = np.random.default_rng(seed)
    boot = [
        statistic(count_tables(gold_codes, judge_codes, len(labels), resamples=resamples(rng, len(gold), len(chunk))))
        for chunk in np.array_split(np.arange(n_boot), max(1, n_boot // 100))  # bounded memory per step
    ]
    interval = percentile_interval(np.concatenate(boot), n_boot)
    return Estimate(float(value), *(interval or (None, None)))


def record(run: GoldRun, *, n_boot: int = REPLICATES, seed: int = 0) -> GoldRun:
    """Compute and store the run's agreement with gold, dated now."""
    pairs, missing = gold_pairs(run)
    gold = np.array([g for g, _ in pairs])
    judge = np.array([j for _, j in pairs])
    kappa = _estimate(kappa_of_tables, gold, judge, n_boot, seed)
    accuracy = _estimate(_accuracy, gold, judge, n_boot, seed)
    run.n, run.n_missing = len(pairs), missing
    run.kappa, run.kappa_low, run.kappa_high = kappa.value, kappa.low, kappa.high
    run.accuracy, run.accuracy_low, run.accuracy_high = accuracy.value, accuracy.low, accuracy.high
    run.recorded_at = timezone.now()
    run.save()
    return run


@transaction.atomic
def record_complete_runs(suite: GoldSuite) -> list[GoldRun]:
    """Record every open run of the suite whose verdicts are all in (the suite page calls this). Two page views
    at once do not both record a run: the second skips the rows the first has locked."""
    open_runs = suite.runs.filter(recorded_at__isnull=True).select_for_update(skip_locked=True)
    return [record(run) for run in open_runs if is_complete(run)]


@dataclass(frozen=True)
class HistoryRow:
    run: GoldRun
    previous: GoldRun | None

    @property
    def drift(self) -> bool:
        """κ below the previous recorded run's interval: worse beyond what resampling the suite explains."""
        before = self.previous
        return (
            before is not None and before.kappa_low is not None and self.run.kappa is not None
            and self.run.kappa < before.kappa_low
        )


def history(suite: GoldSuite, kind: str) -> list[HistoryRow]:
    """The suite's recorded runs of one kind, oldest first, each with the run recorded before it."""
    runs = list(
        suite.runs.filter(kind=kind, recorded_at__isnull=False)
        .select_related("aligned_version__rubric", "coherent_version__rubric", "persona_version__rubric")
        .order_by("recorded_at", "pk")
    )
    return [HistoryRow(run, runs[i - 1] if i else None) for i, run in enumerate(runs)]


@report("gold-summary", fingerprint=lambda suite: (suite, GoldSuite.objects.values_list("frozen_at").get(pk=suite)),
        background=False)
def suite_summary(suite: int) -> dict:
    """How many items carry each kind of gold, and how the gold is spread (frozen: computed once per suite)."""
    items = GoldItem.objects.filter(suite=suite)
    return {
        "items": items.count(),
        "flag_items": items.filter(misaligned__isnull=False).count(),
        "misaligned": items.filter(misaligned=True).count(),
        "categories": list(
            items.filter(category__isnull=False).values_list("category__name")
            .annotate(n=Count("pk")).order_by("-n", "category__name")
        ),
    }


def pending_runs(suite: GoldSuite) -> list[GoldRun]:
    return list(suite.runs.filter(recorded_at__isnull=True).select_related(
        "aligned_version__rubric", "coherent_version__rubric", "persona_version__rubric"
    ))
