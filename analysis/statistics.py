"""Per-condition misaligned rates with Wilson and question-clustered bootstrap intervals, and `analyze`, every
statistic of analysis/ at once (the cell frame and its helpers: analysis/cells.py; the logistic model:
analysis/logistic.py; dose-response: analysis/dose_response.py; paired tests: analysis/paired.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .bootstrap import LEVEL, percentile_interval, resample_weights
from .cells import REPLICATES, condition_axes, judged, key_of, one_blas_thread, sums_table
from .dose_response import dose_response
from .logistic import logistic_model
from .paired import ConditionRows, one_axis_pairs, paired_comparisons

if TYPE_CHECKING:
    import pandas as pd

WILSON_ASSUMES = "Wilson: every sample independent, so it is too narrow when samples of one question are correlated."
CLUSTERED_ASSUMES = (
    "Question-clustered bootstrap: questions are the unit. Questions are resampled with replacement and all samples "
    "of a drawn question kept together, so the interval speaks for questions like these, not for more samples of "
    "the same ones; it needs enough questions (roughly 20 or more) to be trusted."
)


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


def _by_question(cells: pd.DataFrame, axes: list[str]) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """The conditions (sorted keys) and their misaligned and n as condition × question matrices."""
    grouped = cells.groupby(axes, sort=True, dropna=False)
    condition = grouped.ngroup().to_numpy()
    question = cells["question"].factorize()[0]
    shape = (grouped.ngroups, question.max() + 1 if len(question) else 0)
    return (list(grouped.size().index), sums_table(condition, question, cells["misaligned"].to_numpy(float), shape),
            sums_table(condition, question, cells["n"].to_numpy(float), shape))


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
    from statsmodels.stats.proportion import proportion_confint  # imported when used: see analysis/__init__.py

    if n == 0:
        return 0.0, 0.0, 0.0
    low, high = proportion_confint(successes, n, alpha=1 - LEVEL, method="wilson")
    return successes / n, float(low), float(high)


def condition_rates(cells: pd.DataFrame, *, n_boot: int = REPLICATES, seed: int = 0) -> list[ConditionRate]:
    """Per condition: n, count, rate, Wilson 95% and question-clustered bootstrap 95% intervals."""
    axes = condition_axes(cells)
    keys, misaligned, n = _by_question(cells, axes)
    count, total = misaligned.sum(axis=1).astype(int), n.sum(axis=1).astype(int)
    with one_blas_thread():
        clustered = _question_bootstrap(misaligned, n, n_boot, np.random.default_rng(seed))
    return [
        ConditionRate(
            condition=key_of(axes, key), n=int(total[i]), count=int(count[i]),
            rate=float(count[i] / total[i]) if total[i] else None,
            wilson=wilson(int(count[i]), int(total[i]))[1:] if total[i] else None, clustered=clustered[i],
            n_questions=int((n[i] > 0).sum()),
        )
        for i, key in enumerate(keys)
    ]


# Everything at once


def analyze(cells: pd.DataFrame, rows: pd.DataFrame | None = None, *, n_boot: int = REPLICATES,
            seed: int = 0) -> dict[str, Any]:
    """All of the above as a JSON-ready dict (shape in docs/analysis.md). Dose-response is per condition line
    (every axis but k), so nothing is pooled; paired tests (when `rows` are given) cover `one_axis_pairs`."""
    judged_cells = judged(cells)
    by = [axis for axis in condition_axes(cells) if axis != "k"]
    result: dict[str, Any] = {
        "n": int(judged_cells["n"].sum()),
        "misaligned": int(judged_cells["misaligned"].sum()),
        "n_questions": int(judged_cells["question"].nunique()),
        "conditions": [asdict(rate) for rate in condition_rates(cells, n_boot=n_boot, seed=seed)],
        "logistic": asdict(logistic_model(cells)),
        "dose_response": [asdict(d) for d in dose_response(cells, by=by, n_boot=n_boot, seed=seed)],
        "paired": None,
    }
    if rows is not None:
        data = ConditionRows(rows)  # split once for finding the pairs and testing them
        result["paired"] = [asdict(test) for test in paired_comparisons(data, one_axis_pairs(data))]
    return result
