"""Misalignment per condition, for any chosen rubric versions (not only the active ones).

Counting rule (as the paper, see docs/judging.md): a transcript is in the denominator `n` when both the aligned
and the coherent judge gave a number; REFUSAL/CODE answers of the aligned judge are counted as `refusals` and
`unsure` (< 0.25 mass on numbers) apart, and both are excluded. The outcome and misaligned rules are
judging.verdicts' (`outcome_of`, `misaligned_of`), the counts transcripts.aggregates' (`verdict_aggregates`).
Wilson 95% intervals.

For the experiment's active versions at its own thresholds (what the results page shows by default) the
counts are read from the maintained VerdictCount/CategoryCount rows; for other versions they are counted in
SQL over the JudgeScore rows of those versions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.expressions import Expression
from django.db.models.lookups import Exact

from analysis.statistics import wilson
from transcripts.aggregates import COUNT_FIELDS, verdict_aggregates
from transcripts.models import CategoryCount, Condition, Experiment, Transcript, VerdictCount

from ..models import JudgeScore, PersonaCategory, RubricVersion
from ..reports import done_scores_fingerprint, experiment_fingerprint, report
from ..reports import get as report_result
from ..verdicts import Versions, misaligned_of, outcome_of, set_versions, thresholds_of, verdict_of
from ..verdicts import active_versions as active_versions  # pages ask metrics which versions a table shows


@dataclass(frozen=True)
class Rate:
    count: int
    n: int

    @property
    def value(self) -> float | None:
        return self.count / self.n if self.n else None

    @cached_property  # a template reads it up to three times per rate, and tables show hundreds of rates
    def interval(self) -> tuple[float, float] | None:
        """Wilson 95% interval (analysis.statistics.wilson, the one the charts draw)."""
        if not self.n:
            return None
        _, low, high = wilson(self.count, self.n)
        return low, high

    # Percentages for templates.
    @property
    def percent(self) -> float | None:
        return None if self.value is None else 100 * self.value

    @property
    def interval_percent(self) -> tuple[float, float] | None:
        return None if self.interval is None else (100 * self.interval[0], 100 * self.interval[1])


@dataclass
class ConditionMetrics:
    condition: Condition
    judged: int
    n: int
    refusals: int
    unsure: int
    misaligned: Rate
    mean_aligned: float | None
    mean_coherent: float | None
    persona: list[tuple[str, str, int, float]] = field(default_factory=list)  # key, name, count, share


def judged_transcripts(experiment_ids: list[int], versions: Versions) -> QuerySet:
    """Done transcripts with the two score verdicts joined as `a` and `c` (LEFT JOINs, one row each)."""
    return Transcript.objects.filter(experiment_id__in=experiment_ids, status=Transcript.Status.DONE).annotate(
        a=verdict_of(versions.aligned), c=verdict_of(versions.coherent)
    )


def _verdict() -> Expression:
    return outcome_of(F("a__outcome"), F("c__outcome"))


def scored_q() -> Q:
    """`judged_transcripts` rows both judges scored (counted in rates)."""
    return Q(Exact(_verdict(), Transcript.Outcome.SCORE))


def misaligned_q(aligned_threshold: float | Expression, coherent_threshold: float | Expression) -> Q:
    """`judged_transcripts` rows misaligned at these thresholds (numbers, or expressions such as
    F("experiment__aligned_threshold"))."""
    flag = misaligned_of(_verdict(), F("a__score"), F("c__score"), (aligned_threshold, coherent_threshold))
    return Q(Exact(flag, True))


def _with_verdicts(experiment_ids: list[int], versions: Versions, thresholds: tuple[float, float]) -> QuerySet:
    """`judged_transcripts` with the versions' outcome (`verdict`) and misaligned flag (`flag`)."""
    return judged_transcripts(experiment_ids, versions).alias(verdict=_verdict()).alias(
        flag=misaligned_of(F("verdict"), F("a__score"), F("c__score"), thresholds)
    )


def _reads_cache(experiments: list[Experiment], versions: Versions, thresholds: tuple[float, float]) -> bool:
    """Whether the verdict cache (and so VerdictCount) holds exactly these verdicts: the active versions set on
    each experiment, at its own thresholds. (The fallback of `active_versions` for experiments with none set
    can change under a cache written earlier, so those are counted over the scores.)"""
    return all(
        set_versions(experiment) == versions and thresholds_of(experiment) == tuple(thresholds)
        for experiment in experiments
    )


def _counts_per_condition(experiment: Experiment, versions: Versions, cached: bool) -> dict[int, dict]:
    if cached:
        rows = VerdictCount.objects.filter(experiment=experiment).values("condition_id").annotate(
            **{name: Sum(name) for name in COUNT_FIELDS}
        )
    else:
        rows = _with_verdicts([experiment.pk], versions, thresholds_of(experiment)).values("condition_id").annotate(
            **verdict_aggregates(outcome="verdict", misaligned="flag", aligned="a__score", coherent="c__score")
        )
    return {row["condition_id"]: row for row in rows.order_by()}


def _mean(total: float | None, count: int | None) -> float | None:
    return total / count if count else None


def condition_metrics(experiment: Experiment, versions: Versions) -> list[ConditionMetrics]:
    """One row per condition of the experiment (conditions with nothing judged included, with n = 0)."""
    cached = _reads_cache([experiment], versions, thresholds_of(experiment))
    rows = _counts_per_condition(experiment, versions, cached)
    shares = _persona_counts(experiment, versions, cached)
    result = []
    for condition in experiment.conditions.all():
        row = rows.get(condition.pk, {})
        misaligned = Rate(row.get("misaligned") or 0, row.get("n") or 0)
        result.append(ConditionMetrics(
            condition=condition, judged=row.get("judged") or 0, n=misaligned.n, refusals=row.get("refusals") or 0,
            unsure=row.get("unsure") or 0, misaligned=misaligned,
            mean_aligned=_mean(row.get("aligned_sum"), row.get("aligned_count")),
            mean_coherent=_mean(row.get("coherent_sum"), row.get("coherent_count")),
            persona=[
                (key, name, count, count / misaligned.count)
                for key, name, count in shares.get(condition.pk, [])
            ],
        ))
    return result


def totals(rows: list[ConditionMetrics]) -> dict[str, int]:
    """The experiment's judged, counted (n), refusal/CODE and unsure transcripts over its condition rows."""
    return {key: sum(getattr(r, key) for r in rows) for key in ("judged", "n", "refusals", "unsure")}


def _persona_counts(experiment: Experiment, versions: Versions, cached: bool) -> dict:
    """condition id → [(category key, name, count)] among misaligned transcripts (key "" = not classified),
    most frequent first."""
    if versions.persona is None:
        return {}
    names = dict(PersonaCategory.objects.filter(taxonomy=versions.persona.taxonomy).values_list("key", "name"))
    if cached:
        rows = CategoryCount.objects.filter(
            experiment=experiment, source=CategoryCount.Source.JUDGE, misaligned__gt=0
        ).values("condition_id", "category").annotate(count=Sum("misaligned"))
    else:
        rows = (
            _with_verdicts([experiment.pk], versions, thresholds_of(experiment))
            .annotate(p=verdict_of(versions.persona))
            .filter(flag=True)
            .values("condition_id", category=F("p__category__key")).annotate(count=Count("pk"))
        )
    result: dict[int, list] = defaultdict(list)
    for row in sorted(rows.order_by(), key=lambda row: (-row["count"], row["category"] or "")):
        key = row["category"] or ""
        result[row["condition_id"]].append((key, names.get(key, "not classified"), row["count"]))
    return result


def pooled_rate(experiment_ids: list[int], versions: Versions, thresholds: tuple[float, float],
                condition_ids: list[int] | None = None) -> Rate:
    """The misaligned rate over several conditions or whole experiments at once."""
    experiments = list(Experiment.objects.filter(pk__in=experiment_ids))
    if _reads_cache(experiments, versions, thresholds):
        rows = VerdictCount.objects.filter(experiment_id__in=experiment_ids)
        counts = {"n": Sum("n"), "misaligned": Sum("misaligned")}
    else:
        rows = judged_transcripts(experiment_ids, versions)
        counts = {"n": Count("pk", filter=scored_q()), "misaligned": Count("pk", filter=misaligned_q(*thresholds))}
    if condition_ids is not None:
        rows = rows.filter(condition_id__in=condition_ids)
    totals = rows.aggregate(**counts)
    return Rate(totals["misaligned"] or 0, totals["n"] or 0)


def progress(experiment: Experiment, versions: Versions) -> list[tuple[RubricVersion, dict]]:
    """How far each chosen version has judged the experiment: status → count, and `done_state`, how current
    the done count is (judging.reports.Result.state), with `done_pending` while it is being recounted.

    Waiting and failed scores are counted through the partial index of not-done scores (few once judging is
    over). Counting the done ones joins every judged transcript of the experiment, so that count is a report
    (done_count), recounted in the background while verdicts come in."""
    result = []
    for version in (versions.aligned, versions.coherent, versions.persona):
        if version is None:
            continue
        counts = dict(
            JudgeScore.objects.filter(rubric_version=version, transcript__experiment=experiment)
            .exclude(status=JudgeScore.Status.DONE)
            .values_list("status").annotate(n=Count("pk")).values_list("status", "n")
        )
        done = report_result("judging-progress-done", experiment=experiment.pk, version=version.pk)
        counts[JudgeScore.Status.DONE] = done.value
        counts["done_state"], counts["done_pending"] = done.state, done.pending
        counts["waiting"] = counts.get("pending", 0) + counts.get("running", 0)
        result.append((version, counts))
    return result


def _done_fingerprint(experiment: int, version: int) -> tuple:
    """The version's latest done verdict and the experiment's verdict counts: a done verdict never goes back,
    and is deleted only with its transcript."""
    return done_scores_fingerprint([version]), experiment_fingerprint(experiment)


@report("judging-progress-done", fingerprint=_done_fingerprint)
def done_count(experiment: int, version: int) -> int:
    return JudgeScore.objects.filter(
        rubric_version=version, transcript__experiment=experiment, status=JudgeScore.Status.DONE
    ).count()


@report("served-models", fingerprint=lambda experiment, version: (experiment, done_scores_fingerprint([version])))
def served_models(experiment: int, version: int) -> list[str]:
    """The model names the judge's server reported while judging this experiment (a drift shows as two). The
    DISTINCT reads every verdict of the experiment, so it is a report, recomputed after the version's next done
    verdict."""
    return list(
        JudgeScore.objects.filter(rubric_version=version, transcript__experiment=experiment,
                                  status=JudgeScore.Status.DONE)
        .exclude(served_model="").order_by("served_model").values_list("served_model", flat=True).distinct()[:5]
    )
