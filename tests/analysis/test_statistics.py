"""analysis.statistics against independent computations (statsmodels/scipy called here, or worked examples)
on data built here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy.special import logit
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from analysis import dose_response, logistic, statistics
from analysis.cells import cells_from_rows
from analysis.dose_response import BEYOND, NOT_REACHED, REACHED
from analysis.paired import holm, one_axis_pairs, paired_comparisons
from tests.analysis.data import BASE, cells, clustered_cells, expand, paired


def width(interval):
    return interval[1] - interval[0]


def test_cells_count_judged_transcripts_per_condition_and_question():
    rows = pd.DataFrame([{**BASE, "question": "q1", "seed": seed, "misaligned": value}
                         for seed, value in enumerate([1, 1, 0, None])])
    got = cells_from_rows(rows)
    assert got[["question", "n", "misaligned"]].to_dict("records") == [{"question": "q1", "n": 3, "misaligned": 2}]


def test_wilson_interval_is_statsmodels_wilson_on_the_conditions_totals():
    frame = cells([{"question": "q1", "n": 40, "misaligned": 3}, {"question": "q2", "n": 60, "misaligned": 9},
                   {"k": 4, "question": "q1", "n": 10, "misaligned": 0}])
    rates = statistics.condition_rates(frame, n_boot=200)
    assert [(r.condition["k"], r.n, r.count, r.n_questions) for r in rates] == [(0, 100, 12, 2), (4, 10, 0, 1)]
    assert rates[0].wilson == pytest.approx(proportion_confint(12, 100, method="wilson"))
    assert rates[1].wilson == pytest.approx(proportion_confint(0, 10, method="wilson"))
    assert rates[0].rate == 0.12
    assert rates[1].clustered is None  # one question, and no misaligned transcript: nothing to resample


def _ratio_estimator_se(frame: pd.DataFrame) -> float:
    """The textbook cluster (ratio-estimator) standard error of a pooled rate, questions as clusters."""
    m, n = frame["misaligned"].to_numpy(float), frame["n"].to_numpy(float)
    rate, questions = m.sum() / n.sum(), len(n)
    return float(np.sqrt(questions / (questions - 1) * ((m - rate * n) ** 2).sum()) / n.sum())


def test_clustering_widens_the_interval_when_questions_differ():
    rng = np.random.default_rng(1)
    frame = clustered_cells(rng, [0.9] * 20 + [0.02] * 20, n=50)
    [rate] = statistics.condition_rates(frame, n_boot=4000)
    assert width(rate.clustered) > 4 * width(rate.wilson)
    # The bootstrap agrees with the closed-form cluster standard error of the same rate.
    assert width(rate.clustered) == pytest.approx(2 * 1.96 * _ratio_estimator_se(frame), rel=0.15)


def test_clustered_interval_is_close_to_wilson_when_questions_are_alike():
    rng = np.random.default_rng(2)
    frame = clustered_cells(rng, [0.3] * 200, n=20)
    [rate] = statistics.condition_rates(frame, n_boot=4000)
    assert width(rate.clustered) == pytest.approx(width(rate.wilson), rel=0.15)
    assert rate.clustered[0] < rate.rate < rate.clustered[1]


def _study(seed: int = 3, questions: int = 30) -> pd.DataFrame:
    """Two models × two system prompts × two CoT modes × k ∈ {0, 4, 16, 64}, with question effects."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 0.8, questions)
    rows = []
    for model, model_effect in (("m1", 0.0), ("m2", 0.7)):
        for prompt, prompt_effect in (("default", 0.0), ("safety-first", -0.6)):
            for cot, cot_effect in (("off", 0.0), ("tags", 0.3)):
                for k in (0, 4, 16, 64):
                    for q in range(questions):
                        eta = -3 + 0.35 * np.log2(k + 1) + model_effect + prompt_effect + cot_effect + effect[q]
                        n = int(rng.integers(3, 9))
                        rows.append({"model": model, "system_prompt": prompt, "cot": cot, "k": k,
                                     "question": f"q{q}", "n": n,
                                     "misaligned": int(rng.binomial(n, 1 / (1 + np.exp(-eta))))})
    return cells(rows)


def test_logistic_model_on_cells_equals_the_row_level_cluster_robust_glm():
    frame = _study()
    fit = logistic.logistic_model(frame)
    assert fit.estimable, fit.reason
    assert fit.dropped_terms == ["dataset", "temperature"]
    rows = expand(frame)
    reference = smf.glm("misaligned ~ np.log2(k + 1) + C(model) + C(system_prompt) + C(cot)", data=rows,
                        family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows["question"])[0]})
    names = {("log2(k+1)", None): "np.log2(k + 1)", ("model", "m2"): "C(model)[T.m2]",
             ("system_prompt", "safety-first"): "C(system_prompt)[T.safety-first]", ("cot", "tags"): "C(cot)[T.tags]"}
    assert {(o.term, o.level) for o in fit.odds_ratios} == set(names)
    intervals = reference.conf_int()
    for odds in fit.odds_ratios:
        name = names[(odds.term, odds.level)]
        assert odds.odds_ratio == pytest.approx(np.exp(reference.params[name]), rel=1e-6)
        assert odds.interval == pytest.approx(tuple(np.exp(intervals.loc[name])), rel=1e-6)
        assert odds.p_value == pytest.approx(reference.pvalues[name], rel=1e-5, abs=1e-12)
    assert {o.reference for o in fit.odds_ratios if o.level} == {"m1", "default", "off"}
    assert fit.n == len(rows) and fit.n_questions == 30
    assert "clustered by question (30 questions)" in fit.assumes


@pytest.mark.parametrize(("frame", "reason"), [
    (cells([{"k": k, "question": "q1", "n": 10, "misaligned": k // 2} for k in (0, 4, 16)]), "fewer than 2 questions"),
    (cells([{"k": k, "question": q, "n": 10, "misaligned": 0} for k in (0, 4) for q in "ab"]), "none of the 40"),
    (cells([{"model": m, "k": k, "question": f"q{q}", "n": 10, "misaligned": 0 if m == "m1" else q + k}
            for m in ("m1", "m2") for k in (0, 4) for q in range(5)]), "model = m1: none of its 100"),
    (cells([{"model": m, "dataset": f"d-{m}", "k": k, "question": f"q{q}", "n": 10, "misaligned": q + k + 1}
            for m in ("m1", "m2") for k in (0, 4) for q in range(5)]), "dataset = d-m2 is determined by"),
])
def test_logistic_model_says_why_it_cannot_be_estimated(frame, reason):
    fit = logistic.logistic_model(frame)
    assert not fit.estimable and not fit.odds_ratios
    assert reason in fit.reason


def _dose_cells(rates_by_k: dict[int, float], questions: int = 24, n: int = 40, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spread = rng.normal(0, 0.3, questions)
    return cells([{"k": k, "question": f"q{q}", "n": n,
                   "misaligned": int(rng.binomial(n, 1 / (1 + np.exp(-(logit(rate) + spread[q])))))}
                  for k, rate in rates_by_k.items() for q in range(questions)])


def _statsmodels_curve(frame: pd.DataFrame):
    totals = frame.groupby("k")[["misaligned", "n"]].sum()
    x = sm.add_constant(np.log2(totals.index.to_numpy(float) + 1))
    return sm.GLM(np.column_stack([totals["misaligned"], totals["n"] - totals["misaligned"]]), x,
                  family=sm.families.Binomial()).fit().params


def test_k_at_target_is_the_inverse_of_the_fitted_logit():
    frame = _dose_cells({0: 0.01, 1: 0.015, 4: 0.03, 16: 0.07, 64: 0.15, 256: 0.3})
    [dose] = dose_response.dose_response(frame, n_boot=1000)
    a, b = _statsmodels_curve(frame)
    assert (dose.intercept, dose.slope) == pytest.approx((a, b), rel=1e-6)
    for result in dose.targets:
        expected = 2 ** ((logit(result.target) - a) / b) - 1
        assert result.status == REACHED
        assert result.k == pytest.approx(expected, rel=1e-6)
        low, high = result.interval
        assert low < result.k < high
    assert dose.curve[0][0] == pytest.approx(0) and dose.curve[-1][0] == pytest.approx(256)
    k_mid, rate_mid = dose.curve[30]
    assert rate_mid == pytest.approx(1 / (1 + np.exp(-(a + b * np.log2(k_mid + 1)))), rel=1e-6)
    assert [p["k"] for p in dose.points] == [0, 1, 4, 16, 64, 256]


def test_the_bootstrap_refits_are_statsmodels_fits():
    # The dose-response interval refits 2,000 resamples at once; each must be the maximum-likelihood fit.
    rng = np.random.default_rng(8)
    x = np.log2(np.array([0, 2, 8, 32, 128]) + 1)
    n = rng.integers(20, 200, size=(6, 5)).astype(float)
    misaligned = rng.binomial(n.astype(int), [0.02, 0.04, 0.08, 0.15, 0.3]).astype(float)
    batch = dose_response._fit_logistic(x, misaligned, n)
    for row in range(len(n)):
        expected = sm.GLM(np.column_stack([misaligned[row], n[row] - misaligned[row]]), sm.add_constant(x),
                          family=sm.families.Binomial()).fit().params
        assert batch[row] == pytest.approx(expected, rel=1e-7)


def test_a_target_beyond_the_measured_k_is_not_extrapolated():
    frame = _dose_cells({0: 0.01, 4: 0.02, 16: 0.035, 64: 0.06})
    [dose] = dose_response.dose_response(frame, targets=(0.05, 0.20), n_boot=500)
    a, b = _statsmodels_curve(frame)
    five, twenty = dose.targets
    assert five.status == REACHED and five.k == pytest.approx(2 ** ((logit(0.05) - a) / b) - 1, rel=1e-6)
    assert 2 ** ((logit(0.20) - a) / b) - 1 > 64  # the curve would get there past k = 64, which was not measured
    assert (twenty.status, twenty.k, twenty.interval) == (NOT_REACHED, None, (BEYOND, BEYOND))


def test_dose_response_groups_by_model_and_system_prompt():
    frame = pd.concat([_dose_cells({0: 0.01, 16: 0.1}).assign(model=m, system_prompt=p)
                       for m in ("m1", "m2") for p in ("context-first", "safety-first")])
    groups = [d.group for d in dose_response.dose_response(frame, n_boot=100)]
    assert groups == [{"model": m, "system_prompt": p} for m in ("m1", "m2") for p in ("context-first", "safety-first")]


def test_dose_response_reports_separation_instead_of_a_curve():
    frame = cells([{"k": k, "question": f"q{q}", "n": 5, "misaligned": 5 if k == 64 else 0}
                   for k in (0, 4, 64) for q in range(4)])
    [dose] = dose_response.dose_response(frame, n_boot=100)
    assert "separation" in dose.reason and dose.curve == [] and dose.targets == []


def test_mcnemar_matches_statsmodels_and_the_exact_binomial_test():
    a, b = {"k": 0}, {"k": 64}
    # 60 matched transcripts: 4 misaligned under both, 3 only under a, 11 only under b; 5 of a have no partner.
    outcomes_a = [1] * 4 + [1] * 3 + [0] * 11 + [0] * 42 + [1, 0, 0, 0, 0]
    outcomes_b = [1] * 4 + [0] * 3 + [1] * 11 + [0] * 42
    rows = paired(outcomes_a, outcomes_b, a=a, b=b)
    [test] = paired_comparisons(rows, [(a, b)])
    assert (test.n_pairs, test.only_a, test.only_b, test.unmatched_a, test.unmatched_b) == (60, 3, 11, 5, 0)
    assert test.exact
    assert test.p_value == pytest.approx(binomtest(3, 14, 0.5).pvalue)
    assert test.difference == pytest.approx((15 - 7) / 60)

    # Many discordant pairs: the χ² form, as statsmodels computes it on the table built here.
    outcomes_a = [1] * 10 + [0] * 30 + [0] * 60
    outcomes_b = [0] * 10 + [1] * 30 + [0] * 60
    rows = paired(outcomes_a, outcomes_b, a=a, b=b)
    [test] = paired_comparisons(rows, [(a, b)])
    table = pd.crosstab(pd.Series(outcomes_a, name="a"), pd.Series(outcomes_b, name="b")).reindex(
        index=[1, 0], columns=[1, 0], fill_value=0)
    expected = mcnemar(table.to_numpy(), exact=False, correction=True)
    assert not test.exact
    assert (test.statistic, test.p_value) == pytest.approx((expected.statistic, expected.pvalue))


def test_pairing_changes_the_verdict():
    # 100 matched transcripts: a misaligned on 50, b on the same 50 and 10 more. Unpaired, 50% vs 60% is not
    # significant; paired, every disagreement goes the same way (10 to 0), which is.
    outcomes_a = [1] * 50 + [0] * 50
    outcomes_b = [1] * 60 + [0] * 40
    a, b = {"system_prompt": "default"}, {"system_prompt": "context-first"}
    [test] = paired_comparisons(paired(outcomes_a, outcomes_b, a=a, b=b), [(a, b)])
    _, unpaired_p = proportions_ztest([60, 50], [100, 100])
    newcombe = confint_proportions_2indep(60, 100, 50, 100, compare="diff", method="newcomb")
    assert unpaired_p > 0.05 and newcombe[0] < 0 < newcombe[1]
    assert test.p_value < 0.01
    assert test.p_value == pytest.approx(binomtest(0, 10, 0.5).pvalue)


def test_holm_on_the_worked_example():
    # Holm–Bonferroni's textbook example (Wikipedia): p = 0.01, 0.04, 0.03, 0.005 at α = 0.05 rejects H1 and H4.
    # By hand: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    assert holm([]) == []


def test_holm_equals_statsmodels_multipletests():
    p_values = [*np.random.default_rng(6).uniform(0, 0.2, 40), 0.03, 0.03, 1.0, 0.0]
    assert holm(p_values) == pytest.approx(list(multipletests(p_values, method="holm")[1]), abs=1e-15)


def _two_by_two_rows() -> pd.DataFrame:
    """Models m1, m2 × k 0, 4, sharing seeds; plus m3 at k 0 with seeds of its own."""
    rng = np.random.default_rng(5)
    frames = [paired(list(rng.binomial(1, 0.2, 40)), list(rng.binomial(1, 0.4, 40)), a={"model": m, "k": 0},
                     b={"model": m, "k": 4}) for m in ("m1", "m2")]
    own = paired(list(rng.binomial(1, 0.2, 40)), [], a={"model": "m3", "k": 0}, b={})
    own["seed"] += 10_000
    return pd.concat([*frames, own], ignore_index=True)


def test_pairs_differ_in_one_axis_and_share_seeds():
    rows = _two_by_two_rows()
    pairs = one_axis_pairs(rows)
    assert [({a["model"], b["model"]}, (a["k"], b["k"])) for a, b in pairs] == [
        ({"m1"}, (0, 4)), ({"m1", "m2"}, (0, 0)), ({"m1", "m2"}, (4, 4)), ({"m2"}, (0, 4))]
    tests = paired_comparisons(rows, pairs)
    assert [t.p_holm for t in tests] == pytest.approx(holm([t.p_value for t in tests]))
    assert all(t.n_pairs == 40 and t.unmatched_a == t.unmatched_b == 0 for t in tests)


def test_a_pair_must_name_one_condition_each():
    rows = _two_by_two_rows()
    with pytest.raises(ValueError, match="matches 3 conditions"):
        paired_comparisons(rows, [({"k": 0}, {"model": "m1", "k": 4})])
    duplicated = pd.concat([rows, rows.iloc[:1]])
    with pytest.raises(ValueError, match="same question and seed"):
        paired_comparisons(duplicated, [])


def test_analyze_is_json_with_every_part():
    rows = _two_by_two_rows()
    result = json.loads(json.dumps(statistics.analyze(cells_from_rows(rows), rows, n_boot=200),
                                   allow_nan=False))
    assert set(result) == {"n", "misaligned", "n_questions", "conditions", "logistic", "dose_response", "paired"}
    assert result["n"] == len(rows) and len(result["conditions"]) == 5 and len(result["paired"]) == 4
    # One curve per condition line: every axis but k.
    assert [d["group"] for d in result["dose_response"]] == [
        {**{axis: v for axis, v in BASE.items() if axis != "k"}, "model": model} for model in ("m1", "m2", "m3")]


def test_no_judged_transcripts_is_said_not_raised():
    empty = cells([{"question": "q1", "n": 0, "misaligned": 0}])
    [rate] = statistics.condition_rates(empty)
    assert (rate.n, rate.rate, rate.wilson, rate.clustered) == (0, None, None, None)
    assert logistic.logistic_model(empty).reason == "no judged transcripts"
    assert dose_response.dose_response(empty) == []
