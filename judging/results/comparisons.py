"""Comparisons of misaligned rates: two conditions or two experiments, and the trend against k.

- Difference of two rates: `confint_proportions_2indep(compare="diff", method="newcomb")`, Newcombe's hybrid
  score interval, built from the same Wilson intervals the tables show; two-sided pooled two-proportion z test
  (`proportions_ztest`), the textbook test a reader expects next to it.
- Trend of rate against k (per model × dataset × CoT mode × system prompt × temperature): the linear-by-linear
  association test on the 2 × K table with k as the row scores (`statsmodels Table.test_ordinal_association`).
  For a 2 × K table this is the Cochran–Armitage trend test (its statistic is (N−1)/N times the
  Cochran–Armitage χ²), which needs no model fit and works with zero counts, where a logistic regression of
  misaligned on k would not converge when a rate is 0 or 1. Holm-adjusted across the groups.
- Paired comparisons (McNemar on transcripts matched by question and sample seed) come from
  `analysis.statistics`; here is only which conditions are paired: within an experiment, two conditions that
  differ in one treatment axis; across two experiments, the same condition (never pooled over conditions).

The results page's statistics (rates with their bootstrap intervals, the logistic model, dose-response), its
paired tests and the matching of two experiments are reports (judging.reports): computed by a worker once per
change of the experiments' verdicts and conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from analysis import dose_response, logistic, statistics, tidy
from analysis.axes import AXIS, AXIS_FIELDS
from analysis.paired import PairedTest, holm, mcnemar_test, with_holm
from transcripts.models import Condition, Experiment

from ..reports import experiment_fingerprint, report
from .metrics import ConditionMetrics, Rate, active_versions, condition_metrics

# What makes two conditions the same condition (in one experiment or across two): the condition axes' fields.
AXES = AXIS_FIELDS
# The axes a researcher varies to see an effect within one model and dataset; k is paired against the smallest k
# measured (k = 0 in a usual run), not every k with every other, so the list stays one test per treatment.
TREATMENT_AXES = tuple(AXIS[name].field for name in ("k", "cot", "system_prompt", "temperature"))


@dataclass(frozen=True)
class Difference:
    a: Rate
    b: Rate
    diff: float | None  # rate(b) − rate(a)
    interval: tuple[float, float] | None
    z: float | None
    p_value: float | None


def compare_rates(a: Rate, b: Rate) -> Difference:
    """Rate b − rate a with a 95% interval and a two-proportion z test (None where undefined)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest  # see analysis/__init__.py

    if not a.n or not b.n:
        return Difference(a, b, None, None, None, None)
    low, high = confint_proportions_2indep(b.count, b.n, a.count, a.n, compare="diff", method="newcomb")
    if a.count + b.count in (0, a.n + b.n):
        # Both rates 0 (or both 1): the pooled variance is 0, so there is no evidence of a difference.
        z, p = 0.0, 1.0
    else:
        z, p = proportions_ztest([b.count, a.count], [b.n, a.n])
    return Difference(a, b, b.value - a.value, (float(low), float(high)), float(z), float(p))


@dataclass(frozen=True)
class Trend:
    group: str
    points: list[tuple[int, Rate]]  # (k, rate), k ascending
    z: float | None
    p_value: float | None
    p_holm: float | None = None  # adjusted across the groups shown


def trend_against_k(rows: list[ConditionMetrics]) -> list[Trend]:
    """One trend test per group of conditions that differ only in k (at least two k with judged transcripts)."""
    from statsmodels.stats.contingency_tables import Table  # imported when used: see analysis/__init__.py

    groups: dict[str, dict[int, Rate]] = {}
    for row in rows:
        c = row.condition
        label = f"{c.model_name} · {c.setting}"
        if row.n:
            groups.setdefault(label, {})[c.k] = row.misaligned
    trends = []
    for label, by_k in sorted(groups.items()):
        points = sorted(by_k.items())
        z = p = None
        if len(points) >= 2:
            table = np.array([[r.count, r.n - r.count] for _, r in points], dtype=float)
            if table[:, 0].sum() > 0 and table[:, 1].sum() > 0:
                result = Table(table, shift_zeros=False).test_ordinal_association(
                    row_scores=np.array([k for k, _ in points], dtype=float), col_scores=np.array([1.0, 0.0])
                )
                z, p = float(result.zscore), float(result.pvalue)
            else:
                z, p = 0.0, 1.0  # every transcript misaligned, or none: no trend to see
            if math.isnan(z):
                z = p = None
        trends.append(Trend(label, points, z, p))
    adjusted = holm([t.p_value for t in trends])
    return [replace(t, p_holm=p) for t, p in zip(trends, adjusted, strict=True)]


def condition_key(condition: Condition) -> tuple:
    return tuple(getattr(condition, axis) for axis in AXES)


def _without(condition: Condition, axis: str) -> tuple:
    return tuple(getattr(condition, other) for other in AXES if other != axis)


def treatment_pairs(conditions: list[Condition]) -> list[tuple[Condition, Condition]]:
    """Pairs of conditions that differ in exactly one treatment axis (k only against the smallest k of the
    otherwise equal conditions), the baseline first."""
    smallest_k: dict[tuple, int] = {}
    for c in conditions:
        smallest_k[_without(c, "k")] = min(c.k, smallest_k.get(_without(c, "k"), c.k))
    pairs = []
    for i, a in enumerate(conditions):
        for b in conditions[i + 1:]:
            differing = [axis for axis in AXES if getattr(a, axis) != getattr(b, axis)]
            if len(differing) != 1 or differing[0] not in TREATMENT_AXES:
                continue
            first, second = sorted((a, b), key=lambda c: getattr(c, differing[0]))
            if differing[0] == "k" and first.k != smallest_k[_without(first, "k")]:
                continue
            pairs.append((first, second))
    return pairs


def paired_tests(pairs: list[tuple[Condition, Condition]]
                 ) -> list[tuple[Condition, Condition, PairedTest | None]]:
    """McNemar for each pair on transcripts matched by question and sample seed, Holm-adjusted across the
    tests run; None for a pair where a side has no judged transcript. One SQL query counts every pair."""
    counts = tidy.matched_pair_counts([(a.pk, b.pk) for a, b in pairs])
    testable = [(a, b) for a, b in pairs if counts[a.pk, b.pk].judged_a and counts[a.pk, b.pk].judged_b]
    tests = with_holm([mcnemar_test(tidy.condition_key(a), tidy.condition_key(b), counts[a.pk, b.pk])
                       for a, b in testable])
    by_pair = {(a.pk, b.pk): test for (a, b), test in zip(testable, tests, strict=True)}
    return [(a, b, by_pair.get((a.pk, b.pk))) for a, b in pairs]


@dataclass(frozen=True)
class MatchedCondition:
    """One condition measured in both experiments."""

    a: ConditionMetrics
    b: ConditionMetrics
    difference: Difference  # unpaired: rates over all scored transcripts, Newcombe interval, z test
    paired: PairedTest | None  # McNemar on transcripts matched by question and seed; None when none match
    p_holm: float | None = None

    @property
    def p_value(self) -> float | None:
        """The paired test's p when seeds match (it is the more powerful test), else the z test's."""
        return self.paired.p_value if self.paired is not None else self.difference.p_value


@dataclass(frozen=True)
class Matching:
    matched: list[MatchedCondition]
    only_a: list[ConditionMetrics]
    only_b: list[ConditionMetrics]


def match_conditions(rows_a: list[ConditionMetrics], rows_b: list[ConditionMetrics]) -> Matching:
    """Two experiments compared condition by condition (same model, dataset, k, CoT mode, system prompt,
    temperature), with a paired test where transcripts share question and seed, Holm across the table.
    Conditions found in one experiment only are returned apart; nothing is pooled."""
    by_key_b = {condition_key(r.condition): r for r in rows_b}
    pairs = [(a, by_key_b[condition_key(a.condition)]) for a in rows_a if condition_key(a.condition) in by_key_b]
    tests = {(a.pk, b.pk): test
             for a, b, test in paired_tests([(a.condition, b.condition) for a, b in pairs])}
    matched = []
    for a, b in pairs:
        test = tests[a.condition.pk, b.condition.pk]
        matched.append(MatchedCondition(a, b, compare_rates(a.misaligned, b.misaligned),
                                        test if test is not None and test.n_pairs else None))
    adjusted = holm([m.p_value for m in matched])
    matched_keys = {condition_key(a.condition) for a, _ in pairs}
    return Matching(
        [replace(m, p_holm=p) for m, p in zip(matched, adjusted, strict=True)],
        [r for r in rows_a if condition_key(r.condition) not in matched_keys],
        [r for r in rows_b if condition_key(r.condition) not in matched_keys],
    )


# ---- reports -----------------------------------------------------------------------------------------------

# Paired tests read transcripts matched on seed, which the verdict counts in the fingerprint do not pin down (two
# verdicts swapped between seeds of one group keep every count), so their results also count as old after an hour.
PAIRED_MAX_AGE = 3600


def experiments_fingerprint(**experiments: int) -> list:
    """What the experiments' statistics read: their verdict counts and thresholds, and their conditions."""
    return [(experiment_fingerprint(pk),
             tuple(Condition.objects.filter(experiment=pk).order_by("pk").values_list("pk", flat=True)))
            for _, pk in sorted(experiments.items())]


@report("results-statistics", fingerprint=experiments_fingerprint, warm="experiment")
def results_statistics(experiment: int) -> dict:
    """Per-condition rates with Wilson and question-bootstrap intervals (every condition, judged or not), the
    logistic model's odds ratios (Holm-adjusted) and the dose-response per model (and model × system prompt
    when the prompts vary), from the verdict cache (the active rubric versions)."""
    conditions = list(Condition.objects.filter(experiment=experiment))
    cells = tidy.cells_for(Experiment.objects.get(pk=experiment).transcripts.all())
    rates = {tuple(rate.condition.values()): rate for rate in statistics.condition_rates(cells)}
    fit = logistic.logistic_model(cells)
    groupings = [("model",)]
    if len({c.system_prompt_name for c in conditions}) > 1:
        groupings.append(("model", "system_prompt"))
    return {
        "rates": [(c, rates.get(tuple(tidy.condition_key(c).values()))) for c in conditions],
        "fit": fit,
        "odds_ratios": list(zip(fit.odds_ratios, holm([o.p_value for o in fit.odds_ratios]), strict=True)),
        "dose_responses": [(by, dose_response.dose_response(cells, by=by)) for by in groupings],
    }


@report("results-paired", fingerprint=experiments_fingerprint, warm="experiment", max_age=PAIRED_MAX_AGE)
def results_paired(experiment: int) -> dict:
    """McNemar for every treatment pair of the experiment's conditions (matched-pair counts, one query)."""
    return {"paired": paired_tests(treatment_pairs(list(Condition.objects.filter(experiment=experiment))))}


@report("results-matching", fingerprint=experiments_fingerprint, max_age=PAIRED_MAX_AGE)
def results_matching(experiment: int, other: int) -> dict:
    """Two experiments condition by condition, each with its own active versions (the paired tests read the
    verdict cache, which holds them)."""
    a, b = Experiment.objects.get(pk=experiment), Experiment.objects.get(pk=other)
    return {"matching": match_conditions(condition_metrics(a, active_versions(a)),
                                         condition_metrics(b, active_versions(b)))}
