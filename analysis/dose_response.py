"""Dose-response: the misaligned rate as a logistic curve in log2(k+1) per condition line, and the k at which it
reaches a target rate, with question-clustered bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .bootstrap import LEVEL, resample_weights
from .cells import REPLICATES, condition_axes, judged, key_of, native, one_blas_thread, sums_table

if TYPE_CHECKING:
    import pandas as pd

CURVE_POINTS = 60

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
    from scipy.special import expit, logit  # imported when used: see analysis/__init__.py

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
    from scipy.special import logit  # imported when used: see analysis/__init__.py

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
    from scipy.special import expit  # imported when used: see analysis/__init__.py

    totals_m, totals_n = m.sum(axis=0), n.sum(axis=0)
    points = [{"k": native(k), "n": int(tn), "misaligned": int(tm), "rate": float(tm / tn)}
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
    cells = judged(cells)
    pooled = [axis for axis in condition_axes(cells) if axis not in by and axis != "k" and cells[axis].nunique() > 1]
    assumes = _dose_assumes(by, pooled)
    rng = np.random.default_rng(seed)
    # Codes once for the whole frame, then each group's question × k table from numpy slices: a pandas
    # groupby per group cost more than the group's 2,000 bootstrap fits.
    grouped = cells.groupby(by, sort=True, dropna=False)
    group = grouped.ngroup().to_numpy()
    k_values, k_code = np.unique(cells["k"].to_numpy(), return_inverse=True)
    question = cells["question"].factorize()[0]
    misaligned, n = cells["misaligned"].to_numpy(dtype=float), cells["n"].to_numpy(dtype=float)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(grouped.ngroups + 1))
    results = []
    with one_blas_thread():
        for g, values in enumerate(grouped.size().index):
            rows = order[bounds[g]:bounds[g + 1]]
            _, q = np.unique(question[rows], return_inverse=True)
            ks, k = np.unique(k_code[rows], return_inverse=True)
            shape = (q.max() + 1, len(ks))
            results.append(_dose_response_group(
                key_of(by, values), k_values[ks],
                sums_table(q, k, misaligned[rows], shape), sums_table(q, k, n[rows], shape),
                targets, n_boot, rng, assumes,
            ))
    return results
