"""The logistic model of misaligned answers on the condition axes, with question-clustered errors (analysis/cells.py
says why the question is the unit)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .bootstrap import LEVEL
from .cells import judged, native, one_blas_thread

if TYPE_CHECKING:
    import pandas as pd

# The logistic model's categorical terms; k enters as log2(k+1), so k = 0 is the intercept's baseline and each
# doubling of the number of examples moves the log-odds by the same amount (the paper's k grid is geometric).
MODEL_TERMS = ("model", "dataset", "system_prompt", "cot", "temperature")
DOSE = "log2(k+1)"


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
            labels.append((term, native(level), native(levels[0])))
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
    import statsmodels.api as sm  # imported when used: see analysis/__init__.py
    from scipy.stats import norm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    cells = judged(cells).reset_index(drop=True)
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

    groups = cells["question"].factorize()[0]
    endog = np.column_stack([cells["misaligned"], cells["n"] - cells["misaligned"]]).astype(float)
    with warnings.catch_warnings(), one_blas_thread():
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
    critical = float(norm.ppf(0.5 + LEVEL / 2))
    odds = [
        OddsRatio(term, level, reference, float(np.exp(estimates[i])),
                  (float(np.exp(estimates[i] - critical * se[i])), float(np.exp(estimates[i] + critical * se[i]))),
                  float(p_values[i]))
        for i, (term, level, reference) in enumerate(labels, start=1)
    ]
    return LogisticFit(True, "", terms, dropped, odds, total, len(cells), questions,
                       _logistic_assumes(terms, questions))
