"""Research statistics over misaligned counts, with the question as the unit.

Everything here is a pure function of a **cell frame**: one row per condition × question with the condition
axes (`model, dataset, k, cot, system_prompt, temperature`, optionally `experiment`), `question`, `n` (judged
transcripts) and `misaligned` (how many of them are misaligned). Cells are what keeps the statistics fast at
1M transcripts: a study of 4 models × 4 datasets × 10 k × 2 prompts × 2 CoT modes × 48 questions is 30,720
cells whatever the number of samples. The paired tests need matched-pair counts (`PairCounts`), which
`analysis/tidy.py` counts in SQL and `paired_comparisons` from transcript rows (question, seed, misaligned).

Why the question is the unit: samples of one question are correlated (a question either tends to elicit a
misaligned answer or not), and a result has to generalise over questions, not over more samples of the same
ones. So the intervals resample questions, and the logistic model's errors are clustered by question. A binomial
GLM on (misaligned, n − misaligned) per cell has exactly the row-level Bernoulli GLM's likelihood, and since cells
are nested in questions its question-clustered sandwich is the row-level one too (each question's score is the
sum of its cells' scores); only the finite-sample factor counts rows, so it is applied with the row count.

No Django here (the axis names come from analysis.axes, plain data): `analysis/tidy.py` builds the frames
from the database, `manage.py analyze` from a CSV.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import expit, logit
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning
from threadpoolctl import threadpool_limits

from .axes import AXIS_NAMES as AXES
from .bootstrap import LEVEL, percentile_interval, resample_weights

EXPERIMENT = "experiment"  # an optional axis: cells of several experiments are never pooled
CELL_COLUMNS = (*AXES, "question", "n", "misaligned")
ROW_COLUMNS = (*AXES, "question", "seed", "misaligned")
# The logistic model's categorical terms; k enters as log2(k+1), so k = 0 is the intercept's baseline and each
# doubling of the number of examples moves the log-odds by the same amount (the paper's k grid is geometric).
MODEL_TERMS = ("model", "dataset", "system_prompt", "cot", "temperature")
DOSE = "log2(k+1)"
# Bootstrap replicates here (twice analysis.bootstrap.REPLICATES): these are the intervals a paper quotes, and the
# k-at-target bounds are order statistics of replicates that may be ±inf, whose 2.5% tails should hold 50
# replicates each; every replicate of every condition is one matrix product, so the extra ones cost little.
REPLICATES = 2000
Z = float(norm.ppf(0.5 + LEVEL / 2))
# McNemar's χ² approximation is poor with few discordant pairs; below this many the exact binomial test is used.
EXACT_BELOW = 25
CURVE_POINTS = 60

WILSON_ASSUMES = "Wilson: every sample independent, so it is too narrow when samples of one question are correlated."
CLUSTERED_ASSUMES = (
    "Question-clustered bootstrap: questions are the unit. Questions are resampled with replacement and all samples "
    "of a drawn question kept together, so the interval speaks for questions like these, not for more samples of "
    "the same ones; it needs enough questions (roughly 20 or more) to be trusted."
)
PAIRED_ASSUMES = (
    "McNemar on transcripts matched by question and sample seed: only pairs where the two conditions disagree "
    "count; exact binomial test below 25 such pairs, else χ² with continuity correction. It treats pairs as "
    "independent (pairs of one question are not clustered). p-values are Holm-adjusted across the list."
)


def condition_axes(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a condition in this frame."""
    return [*AXES, EXPERIMENT] if EXPERIMENT in frame.columns else list(AXES)


def _native(value: Any) -> Any:
    """numpy scalars as Python values, so results go to JSON as they are."""
    return value.item() if isinstance(value, np.generic) else value


def _key(axes: Sequence[str], values: Any) -> dict[str, Any]:
    values = values if isinstance(values, tuple) else (values,)
    return {axis: _native(value) for axis, value in zip(axes, values, strict=True)}


def cells_from_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy transcript rows (one per transcript, `misaligned` 0/1 or missing when not judged) → cells."""
    keys = [*condition_axes(frame), "question"]
    cells = (
        frame.groupby(keys, sort=True, dropna=False)["misaligned"]
        .agg(n="count", misaligned="sum")
        .reset_index()
    )
    return cells.astype({"n": "int64", "misaligned": "int64"})


def _judged(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["n"] > 0]


def _one_blas_thread() -> threadpool_limits:
    """The matrices here are narrow (a dozen columns, or 48 questions), so OpenBLAS's threads gain little, and on
    a busy 2-core server they spin waiting for each other: the logistic fit of a 1M-transcript study took 1.6 s
    with them and 0.4 s without, a 2,000 × 48 bootstrap product 50 ms instead of 0.1 ms."""
    return threadpool_limits(limits=1, user_api="blas")


# ---------------------------------------------------------------------------------------------------------------
# Per-condition rates


@dataclass(frozen=True)
class ConditionRate:
    condition: dict[str, Any]
    n: int
    count: int
    rate: float | None
    wilson: tuple[float, float] | None
    clustered: tuple[float, float] | None  # None: fewer than 2 questions, or a rate of 0 or 1 (no spread to resample)
    n_questions: int
    assumes: str = f"{WILSON_ASSUMES} {CLUSTERED_ASSUMES}"


def _table(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sums of `values` by (row code, column code): e.g. misaligned per condition × question."""
    table = np.zeros(shape)
    np.add.at(table, (rows, columns), values)
    return table


def _by_question(cells: pd.DataFrame, axes: list[str]) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """The conditions (sorted keys) and their misaligned and n as condition × question matrices."""
    grouped = cells.groupby(axes, sort=True, dropna=False)
    condition = grouped.ngroup().to_numpy()
    question = pd.factorize(cells["question"])[0]
    shape = (grouped.ngroups, question.max() + 1 if len(question) else 0)
    return (list(grouped.size().index), _table(condition, question, cells["misaligned"].to_numpy(float), shape),
            _table(condition, question, cells["n"].to_numpy(float), shape))


def _question_bootstrap(misaligned: np.ndarray, n: np.ndarray, n_boot: int,
                        rng: np.random.Generator) -> list[tuple[float, float] | None]:
    """Percentile interval of each row's pooled rate over its questions (n > 0) drawn with replacement.

    Rows with the same questions share the draws (one resample of the questions serves every condition, as in
    a bootstrap of the whole study), so all replicates of all conditions are two matrix products: a replicate
    draws question q w_q times, and its count is Σ w_q·misaligned_q."""
    intervals: list[tuple[float, float] | None] = [None] * len(n)
    present = n > 0
    count, total = misaligned.sum(axis=1), n.sum(axis=1)
    spread = (present.sum(axis=1) >= 2) & (count > 0) & (count < total)
    if not spread.any():
        return intervals
    patterns, which = np.unique(present[spread], axis=0, return_inverse=True)
    rows = np.flatnonzero(spread)
    for p, pattern in enumerate(patterns):
        members, questions = rows[which.ravel() == p], np.flatnonzero(pattern)
        weights = resample_weights(rng, len(questions), n_boot)
        rates = (weights @ misaligned[np.ix_(members, questions)].T) / (weights @ n[np.ix_(members, questions)].T)
        for member, replicates in zip(members, rates.T, strict=True):
            intervals[member] = percentile_interval(replicates, n_boot)
    return intervals


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """(rate, low, high) with the Wilson 95% interval (WILSON_ASSUMES); (0, 0, 0) for n = 0. The one Wilson:
    the statistics, judging's rates and the charts use it."""
    if n == 0:
        return 0.0, 0.0, 0.0
    low, high = proportion_confint(successes, n, alpha=1 - LEVEL, method="wilson")
    return successes / n, float(low), float(high)


def condition_rates(cells: pd.DataFrame, *, n_boot: int = REPLICATES, seed: int = 0) -> list[ConditionRate]:
    """Per condition: n, count, rate, Wilson 95% and question-clustered bootstrap 95% intervals."""
    axes = condition_axes(cells)
    keys, misaligned, n = _by_question(cells, axes)
    count, total = misaligned.sum(axis=1).astype(int), n.sum(axis=1).astype(int)
    with _one_blas_thread():
        clustered = _question_bootstrap(misaligned, n, n_boot, np.random.default_rng(seed))
    return [
        ConditionRate(
            condition=_key(axes, key), n=int(total[i]), count=int(count[i]),
            rate=float(count[i] / total[i]) if total[i] else None,
            wilson=wilson(int(count[i]), int(total[i]))[1:] if total[i] else None, clustered=clustered[i],
            n_questions=int((n[i] > 0).sum()),
        )
        for i, key in enumerate(keys)
    ]


# ---------------------------------------------------------------------------------------------------------------
# Logistic model


@dataclass(frozen=True)
class OddsRatio:
    term: str  # "log2(k+1)" or a categorical axis
    level: Any  # the level compared with `reference`; None for log2(k+1)
    reference: Any
    odds_ratio: float
    interval: tuple[float, float]
    p_value: float


@dataclass(frozen=True)
class LogisticFit:
    """A fitted model, or (`estimable` False) the reason there is none; `odds_ratios` is then empty."""

    estimable: bool
    reason: str
    terms: list[str]
    dropped_terms: list[str]  # terms constant in these cells, so not in the model
    odds_ratios: list[OddsRatio]
    n: int
    n_cells: int
    n_questions: int
    assumes: str


def _logistic_assumes(terms: Sequence[str], n_questions: int) -> str:
    shifts = ", ".join(t for t in terms if t != DOSE) or "nothing else"
    return (
        f"Logistic model: the log-odds of a misaligned answer rise linearly in log2(k+1) with one slope for all "
        f"conditions, plus one shift per level of {shifts}; effects add on the log-odds scale (no interactions). "
        f"Standard errors are clustered by question ({n_questions} questions): samples of one question may be "
        f"correlated, questions are assumed independent; with fewer than about 30 questions the intervals are "
        f"optimistic. Odds ratios compare each level with the reference level; log2(k+1)'s is per doubling of k+1."
    )


def _design(cells: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, Any, Any]], list[str], list[str]]:
    """Intercept, log2(k+1) and treatment-coded dummies for the terms that vary (reference: first level in
    sorted order). Returns the matrix, (term, level, reference) per non-intercept column, terms, dropped terms."""
    columns = [np.ones(len(cells))]
    labels: list[tuple[str, Any, Any]] = []
    terms, dropped = [], []
    if cells["k"].nunique() > 1:
        columns.append(np.log2(cells["k"].to_numpy(dtype=float) + 1))
        labels.append((DOSE, None, None))
        terms.append(DOSE)
    else:
        dropped.append(DOSE)
    for term in MODEL_TERMS:
        levels = sorted(cells[term].unique())
        if len(levels) < 2:
            dropped.append(term)
            continue
        terms.append(term)
        for level in levels[1:]:
            columns.append((cells[term] == level).to_numpy(dtype=float))
            labels.append((term, _native(level), _native(levels[0])))
    return np.column_stack(columns), labels, terms, dropped


def _not_estimable(reason: str, cells: pd.DataFrame, terms: list[str], dropped: list[str]) -> LogisticFit:
    n_questions = cells["question"].nunique()
    return LogisticFit(False, reason, terms, dropped, [], int(cells["n"].sum()), len(cells), n_questions,
                       _logistic_assumes(terms, n_questions))


def _separated_level(cells: pd.DataFrame, terms: Iterable[str]) -> str | None:
    """A level whose transcripts are all misaligned or none: its odds ratio would be infinite."""
    for term in terms:
        if term == DOSE:
            continue
        totals = cells.groupby(term)[["misaligned", "n"]].sum()
        for level, row in totals.iterrows():
            if row["misaligned"] in (0, row["n"]):
                which = "none" if row["misaligned"] == 0 else "all"
                return (f"{term} = {level}: {which} of its {row['n']} transcripts are misaligned, so its odds ratio "
                        f"is infinite (perfect separation); filter that level out or merge it with another")
    return None


def _confounded_column(design: np.ndarray, labels: list[tuple[str, Any, Any]]) -> str | None:
    """The first column that is a combination of the earlier ones (e.g. each model run on its own dataset).
    The ranks are those of the small Gram matrix's leading blocks, not of the 30,000-row design itself."""
    gram = design.T @ design
    for end in range(2, design.shape[1] + 1):
        if np.linalg.matrix_rank(gram[:end, :end], hermitian=True) < end:
            term, level, _ = labels[end - 2]
            return term if level is None else f"{term} = {level}"
    return None


def logistic_model(cells: pd.DataFrame) -> LogisticFit:
    """Binomial GLM of misaligned on log2(k+1) + model + dataset + system prompt + CoT (+ temperature), each
    categorical term only when it varies, with question-cluster-robust errors; odds ratios with 95% intervals."""
    cells = _judged(cells).reset_index(drop=True)
    if cells.empty:
        return _not_estimable("no judged transcripts", cells, [], [])
    design, labels, terms, dropped = _design(cells)
    questions = cells["question"].nunique()
    total, count = int(cells["n"].sum()), int(cells["misaligned"].sum())
    reason = None
    if questions < 2:
        reason = "fewer than 2 questions: errors clustered by question need several questions (20 or more to trust)"
    elif count in (0, total):
        reason = f"{'none' if count == 0 else 'all'} of the {total} transcripts are misaligned: nothing to model"
    elif design.shape[1] > questions:
        reason = (f"{design.shape[1]} coefficients but only {questions} questions: question-clustered errors "
                  f"cannot be estimated; filter to fewer conditions or add questions")
    else:
        reason = _separated_level(cells, terms)
        if reason is None and (column := _confounded_column(design, labels)):
            reason = (f"{column} is determined by the other terms in these conditions (confounded), so its effect "
                      f"cannot be separated from theirs; filter so the axes cross")
    if reason:
        return _not_estimable(reason, cells, terms, dropped)

    groups = pd.factorize(cells["question"])[0]
    endog = np.column_stack([cells["misaligned"], cells["n"] - cells["misaligned"]]).astype(float)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            fit = sm.GLM(endog, design, family=sm.families.Binomial()).fit(
                cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False}
            )
        except (PerfectSeparationWarning, ConvergenceWarning) as problem:
            return _not_estimable(f"the model does not converge ({problem}); some combination of conditions "
                                  f"is all or nothing misaligned", cells, terms, dropped)
    # The usual small-sample factor G/(G−1)·(N−1)/(N−p) with N the number of transcripts, as the row-level fit has.
    params = design.shape[1]
    factor = questions / (questions - 1) * (total - 1) / (total - params)
    se = np.sqrt(np.diag(fit.cov_params()) * factor)
    estimates = np.asarray(fit.params)
    z = estimates / se
    p_values = 2 * norm.sf(np.abs(z))
    odds = [
        OddsRatio(term, level, reference, float(np.exp(estimates[i])),
                  (float(np.exp(estimates[i] - Z * se[i])), float(np.exp(estimates[i] + Z * se[i]))),
                  float(p_values[i]))
        for i, (term, level, reference) in enumerate(labels, start=1)
    ]
    return LogisticFit(True, "", terms, dropped, odds, total, len(cells), questions,
                       _logistic_assumes(terms, questions))


# ---------------------------------------------------------------------------------------------------------------
# Dose-response


NOT_REACHED = "not reached within the measured k"
ALREADY = "reached at or below the smallest measured k"
REACHED = "reached"
# An interval bound outside the measured k is said, not extrapolated.
BELOW = "at or below the smallest measured k"
BEYOND = "beyond the largest measured k"


@dataclass(frozen=True)
class KAtTarget:
    target: float
    k: float | None  # the fitted curve's k at the target; None unless `status` is "reached"
    status: str
    # 95% question-bootstrap interval; a bound outside the measured k is BELOW or BEYOND instead of a number.
    # None with fewer than 2 questions.
    interval: tuple[float | str, float | str] | None


@dataclass(frozen=True)
class DoseResponse:
    group: dict[str, Any]
    points: list[dict[str, Any]]  # measured: k, n, misaligned, rate
    curve: list[tuple[float, float]]  # (k, fitted rate), evenly spaced in log2(k+1) over the measured k
    intercept: float | None
    slope: float | None  # per unit of log2(k+1)
    targets: list[KAtTarget]
    n_questions: int
    reason: str  # why there is no fit, else ""
    assumes: str


def _fit_logistic(x: np.ndarray, misaligned: np.ndarray, n: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Maximum-likelihood (intercept, slope) of logit(rate) = a + b·x for each row of `misaligned`/`n` at once
    (rows are bootstrap replicates, columns the k values): Newton–Raphson on binomial counts, vectorised so
    2,000 replicates cost a few small array steps instead of 2,000 statsmodels fits. A row stops when its step is
    negligible; a separated row (no finite maximum) stops when its curve is a step, wherever it got to."""
    misaligned, n = np.atleast_2d(misaligned).astype(float), np.atleast_2d(n).astype(float)
    pooled = np.clip(misaligned.sum(axis=1) / n.sum(axis=1), 1e-6, 1 - 1e-6)
    beta = np.column_stack([logit(pooled), np.zeros(len(pooled))])
    active = np.arange(len(beta))
    for _ in range(iterations):
        m, total, b = misaligned[active], n[active], beta[active]
        p = expit(b[:, :1] + b[:, 1:] * x)
        w, r = total * p * (1 - p), m - total * p
        g0, g1 = r.sum(axis=1), (r * x).sum(axis=1)
        h00, h01, h11 = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
        det = h00 * h11 - h01**2
        flat = det <= 1e-12  # separated: the likelihood has flattened out
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.column_stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det])
        step[flat] = 0
        beta[active] = b + np.clip(step, -5, 5)  # damped: a separated row must not overflow
        done = flat | (np.abs(step).max(axis=1) < 1e-10) | (np.abs(beta[active, 1]) > 50)
        active = active[~done]
        if not active.size:
            break
    return beta


def _separated(misaligned: np.ndarray, n: np.ndarray) -> bool:
    """Counts in k order that are none misaligned below some k and all misaligned above it (or the reverse),
    whatever that k itself has: the likelihood keeps rising as the curve steepens, so there is no finite fit."""
    for flip in (False, True):
        m = misaligned[::-1] if flip else misaligned
        total = n[::-1] if flip else n
        for split in range(len(m)):
            if not m[:split].any() and (m[split + 1:] == total[split + 1:]).all():
                return True
    return False


def _x_at_target(beta: np.ndarray, target: float, x_min: float, x_max: float,
                 misaligned: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log2(k+1) where each fitted curve first reaches `target` within [x_min, x_max]: −inf when it is already
    there at x_min, +inf when it is not reached by x_max (never extrapolated)."""
    a, b = beta[:, 0], beta[:, 1]
    goal = logit(target)
    at_min, at_max = a + b * x_min >= goal, a + b * x_max >= goal
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(at_min, -np.inf, np.where(at_max, (goal - a) / b, np.inf))
    # No misaligned transcript at all: the fitted rate is 0 everywhere; all misaligned: 1 everywhere.
    count, total = np.atleast_2d(misaligned).sum(axis=1), np.atleast_2d(n).sum(axis=1)
    x = np.where(count == 0, np.inf, x)
    return np.where(count == total, -np.inf, x)


def _bound(x: float) -> float | str:
    return BELOW if x == -np.inf else BEYOND if x == np.inf else float(2**x - 1)


def _dose_assumes(by: Sequence[str], pooled: Sequence[str]) -> str:
    return (
        f"Dose-response per {' × '.join(by)}: logit(rate) = a + b·log2(k+1) fitted to the counts at each k"
        + (f" (pooling {', '.join(pooled)})" if pooled else "")
        + "; the k at a target is where the fitted curve reaches it, never extrapolated past the measured k. "
        "Its interval resamples questions with replacement (questions are the unit) and refits."
    )


def _dose_response_group(group_key: dict[str, Any], ks: np.ndarray, m: np.ndarray, n: np.ndarray,
                         targets: Sequence[float], n_boot: int, rng: np.random.Generator,
                         assumes: str) -> DoseResponse:
    """One group's curve from its question × k counts `m` (misaligned) and `n`, `ks` ascending."""
    totals_m, totals_n = m.sum(axis=0), n.sum(axis=0)
    points = [{"k": _native(k), "n": int(tn), "misaligned": int(tm), "rate": float(tm / tn)}
              for k, tm, tn in zip(ks, totals_m, totals_n, strict=True)]
    ks = ks.astype(float)
    no_fit = DoseResponse(group_key, points, [], None, None, [], len(m), "", assumes)
    if len(ks) < 2:
        return replace(no_fit, reason="measured at one k only: no curve to fit")
    x = np.log2(ks + 1)
    beta = _fit_logistic(x, totals_m, totals_n)
    count, total = totals_m.sum(), totals_n.sum()
    if 0 < count < total and _separated(totals_m, totals_n):
        return replace(no_fit, reason="separation: no k below one value has a misaligned transcript and every "
                                      "transcript above it is misaligned, so the fitted curve steepens without "
                                      "limit and has no finite fit")
    # A replicate's counts per k are its question weights times the question × k counts, and all replicates are
    # fitted together.
    weights = resample_weights(rng, len(m), n_boot)
    boot_m, boot_n = weights @ m, weights @ n
    boot_beta = _fit_logistic(x, boot_m, boot_n)
    grid = np.linspace(x[0], x[-1], CURVE_POINTS)
    fitted = np.zeros_like(grid) if count == 0 else expit(beta[0, 0] + beta[0, 1] * grid)
    if count == total:
        fitted = np.ones_like(grid)
    curve = [(float(2**g - 1), float(r)) for g, r in zip(grid, fitted, strict=True)]
    results = []
    for target in targets:
        point = float(_x_at_target(beta, target, x[0], x[-1], totals_m, totals_n)[0])
        status = ALREADY if point == -np.inf else NOT_REACHED if point == np.inf else REACHED
        interval = None
        if len(m) >= 2:
            boot = _x_at_target(boot_beta, target, x[0], x[-1], boot_m, boot_n)
            # Order statistics, not analysis.bootstrap's interpolated percentiles: replicates beyond the measured k
            # are ±inf, and usable (a bound beyond the measured k), not undefined.
            low, high = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")
            interval = (_bound(float(low)), _bound(float(high)))
        results.append(KAtTarget(target, float(2**point - 1) if status == REACHED else None, status, interval))
    intercept, slope = (float(beta[0, 0]), float(beta[0, 1])) if 0 < count < total else (None, None)
    return replace(no_fit, curve=curve, intercept=intercept, slope=slope, targets=results)


def dose_response(cells: pd.DataFrame, *, by: Sequence[str] = ("model", "system_prompt"),
                  targets: Sequence[float] = (0.05, 0.10), n_boot: int = REPLICATES,
                  seed: int = 0) -> list[DoseResponse]:
    """Per group: the fitted logistic curve of rate against log2(k+1), measured points, and the k at which the
    fitted rate reaches each target with a question-bootstrap interval, or "not reached within the measured k"."""
    by = list(by)
    cells = _judged(cells)
    pooled = [axis for axis in condition_axes(cells) if axis not in by and axis != "k" and cells[axis].nunique() > 1]
    assumes = _dose_assumes(by, pooled)
    rng = np.random.default_rng(seed)
    # Codes once for the whole frame, then each group's question × k table from numpy slices: a pandas
    # groupby per group cost more than the group's 2,000 bootstrap fits.
    grouped = cells.groupby(by, sort=True, dropna=False)
    group = grouped.ngroup().to_numpy()
    k_values, k_code = np.unique(cells["k"].to_numpy(), return_inverse=True)
    question = pd.factorize(cells["question"])[0]
    misaligned, n = cells["misaligned"].to_numpy(dtype=float), cells["n"].to_numpy(dtype=float)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(grouped.ngroups + 1))
    results = []
    with _one_blas_thread():
        for g, values in enumerate(grouped.size().index):
            rows = order[bounds[g]:bounds[g + 1]]
            _, q = np.unique(question[rows], return_inverse=True)
            ks, k = np.unique(k_code[rows], return_inverse=True)
            shape = (q.max() + 1, len(ks))
            results.append(_dose_response_group(
                _key(by, values), k_values[ks], _table(q, k, misaligned[rows], shape), _table(q, k, n[rows], shape),
                targets, n_boot, rng, assumes,
            ))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Paired comparisons


@dataclass(frozen=True)
class PairedTest:
    a: dict[str, Any]
    b: dict[str, Any]
    n_pairs: int  # transcripts matched on (question, seed)
    only_a: int  # pairs where a is misaligned and b is not
    only_b: int  # pairs where b is misaligned and a is not
    rate_a: float | None  # on the matched pairs
    rate_b: float | None
    difference: float | None  # rate_b − rate_a on the matched pairs
    exact: bool
    statistic: float | None
    p_value: float | None
    p_holm: float | None
    unmatched_a: int
    unmatched_b: int
    assumes: str = PAIRED_ASSUMES


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values across the list (None entries, tests that could not be run, stay None): the i-th
    smallest of m is multiplied by m − i + 1, then made non-decreasing and capped at 1. Written out rather than
    statsmodels' multipletests, which runs a full garbage collection on every Holm call (0.26 s in a process
    holding a large frame); the tests compare the two."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if present:
        values = np.array([p_values[i] for i in present], dtype=float)
        order = np.argsort(values, kind="stable")
        scaled = values[order] * np.arange(len(values), 0, -1)
        for i, value in zip(np.array(present)[order], np.minimum(np.maximum.accumulate(scaled), 1), strict=True):
            adjusted[i] = float(value)
    return adjusted


class ConditionRows:
    """Transcript rows split by condition once, each condition's (question, seed) codes sorted for matching."""

    def __init__(self, rows: pd.DataFrame):
        rows = rows[rows["misaligned"].notna()]
        self.axes = condition_axes(rows)
        codes = rows.groupby(["question", "seed"], sort=False).ngroup().to_numpy()
        misaligned = rows["misaligned"].to_numpy().astype(bool)
        self.by_condition: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for values, index in rows.groupby(self.axes, sort=True, dropna=False).indices.items():
            values = values if isinstance(values, tuple) else (values,)
            order = np.argsort(codes[index], kind="stable")
            keys = codes[index][order]
            if (np.diff(keys) == 0).any():
                raise ValueError(f"condition {_key(self.axes, values)} has two transcripts with the same question "
                                 f"and seed: pairs would be ambiguous")
            self.by_condition[values] = (keys, misaligned[index][order])

    def select(self, spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the one condition matching every axis value in `spec`."""
        if set(spec) == set(self.axes):
            found = [tuple(spec[axis] for axis in self.axes)]
            found = found if found[0] in self.by_condition else []
        else:
            found = [values for values in self.by_condition
                     if all(_key(self.axes, values).get(axis) == value for axis, value in spec.items())]
        if len(found) != 1:
            raise ValueError(f"{dict(spec)} matches {len(found)} conditions; a paired test needs exactly one")
        return self.by_condition[found[0]]


@dataclass(frozen=True)
class PairCounts:
    """Two conditions' judged transcripts matched on (question, seed): the matched pairs' 2 × 2 table and, per
    side, the transcripts without a partner. All McNemar needs, so SQL can count it (analysis.tidy)."""

    both: int  # pairs where a and b are misaligned
    only_a: int
    only_b: int
    neither: int
    unmatched_a: int
    unmatched_b: int

    @property
    def n_pairs(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def judged_a(self) -> int:
        return self.n_pairs + self.unmatched_a

    @property
    def judged_b(self) -> int:
        return self.n_pairs + self.unmatched_b


def mcnemar_test(a: Mapping[str, Any], b: Mapping[str, Any], counts: PairCounts) -> PairedTest:
    """McNemar for condition b against a from their matched-pair counts (p_holm left None: see `with_holm`)."""
    pairs, only_a, only_b = counts.n_pairs, counts.only_a, counts.only_b
    statistic = p_value = rate_a = rate_b = None
    exact = only_a + only_b < EXACT_BELOW
    if pairs:
        result = mcnemar([[counts.both, only_a], [only_b, counts.neither]], exact=exact)
        statistic, p_value = float(result.statistic), float(result.pvalue)
        rate_a, rate_b = (counts.both + only_a) / pairs, (counts.both + only_b) / pairs
    return PairedTest(
        a=dict(a), b=dict(b), n_pairs=pairs, only_a=only_a, only_b=only_b, rate_a=rate_a, rate_b=rate_b,
        difference=None if not pairs else rate_b - rate_a, exact=exact, statistic=statistic, p_value=p_value,
        p_holm=None, unmatched_a=counts.unmatched_a, unmatched_b=counts.unmatched_b,
    )


def with_holm(tests: Sequence[PairedTest]) -> list[PairedTest]:
    """The tests with their p-values Holm-adjusted across the list."""
    adjusted = holm([test.p_value for test in tests])
    return [replace(test, p_holm=p) for test, p in zip(tests, adjusted, strict=True)]


def _pair_counts(a: Mapping[str, Any], b: Mapping[str, Any], data: ConditionRows) -> PairCounts:
    keys_a, values_a = data.select(a)
    keys_b, values_b = data.select(b)
    _, in_a, in_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    pa, pb = values_a[in_a], values_b[in_b]
    return PairCounts(
        both=int((pa & pb).sum()), only_a=int((pa & ~pb).sum()), only_b=int((~pa & pb).sum()),
        neither=int((~pa & ~pb).sum()), unmatched_a=len(keys_a) - len(in_a), unmatched_b=len(keys_b) - len(in_b),
    )


def paired_comparisons(rows: pd.DataFrame | ConditionRows,
                       pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[PairedTest]:
    """McNemar per pair of conditions on transcripts matched by (question, seed), Holm-adjusted across the list.

    `rows`: one row per transcript with the condition axes, `question`, `seed`, `misaligned` (0/1; missing rows
    are not judged and left out). Each pair is two mappings of axis → value, each selecting exactly one condition
    (a mapping may name only the axes that tell the conditions in `rows` apart)."""
    data = rows if isinstance(rows, ConditionRows) else ConditionRows(rows)
    return with_holm([mcnemar_test(a, b, _pair_counts(a, b, data)) for a, b in pairs])


def one_axis_pairs(rows: pd.DataFrame | ConditionRows) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every two conditions in `rows` that differ in exactly one axis and share at least one (question, seed),
    the lower value of that axis first (k = 0 before k = 4, CoT "off" before "tags")."""
    data = rows if isinstance(rows, ConditionRows) else ConditionRows(rows)
    pairs = set()
    for axis in range(len(data.axes)):
        # Conditions equal on every other axis differ in this one only.
        alike: dict[tuple, list[tuple]] = {}
        for condition in data.by_condition:
            alike.setdefault(condition[:axis] + condition[axis + 1:], []).append(condition)
        for members in alike.values():
            pairs.update(itertools.combinations(sorted(members), 2))
    return [
        (_key(data.axes, first), _key(data.axes, second)) for first, second in sorted(pairs)
        if np.intersect1d(data.by_condition[first][0], data.by_condition[second][0], assume_unique=True).size
    ]


# ---------------------------------------------------------------------------------------------------------------
# Everything at once


def analyze(cells: pd.DataFrame, rows: pd.DataFrame | None = None, *, n_boot: int = REPLICATES,
            seed: int = 0) -> dict[str, Any]:
    """All of the above as a JSON-ready dict (shape in docs/analysis.md). Dose-response is per condition line
    (every axis but k), so nothing is pooled; paired tests (when `rows` are given) cover `one_axis_pairs`."""
    judged = _judged(cells)
    by = [axis for axis in condition_axes(cells) if axis != "k"]
    result: dict[str, Any] = {
        "n": int(judged["n"].sum()),
        "misaligned": int(judged["misaligned"].sum()),
        "n_questions": int(judged["question"].nunique()),
        "conditions": [asdict(rate) for rate in condition_rates(cells, n_boot=n_boot, seed=seed)],
        "logistic": asdict(logistic_model(cells)),
        "dose_response": [asdict(d) for d in dose_response(cells, by=by, n_boot=n_boot, seed=seed)],
        "paired": None,
    }
    if rows is not None:
        data = ConditionRows(rows)  # split once for finding the pairs and testing them
        result["paired"] = [asdict(test) for test in paired_comparisons(data, one_axis_pairs(data))]
    return result
