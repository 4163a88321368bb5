"""The percentile bootstrap, written once: how units are drawn, how many replicates by default, and when there
are too few usable replicates for an interval.

Every interval of the app that resamples (questions in analysis.statistics, transcripts in
judging.validity.human_calibration, gold items in judging.validity.gold, items in judging.annotation.agreement)
draws with `resamples` or `resample_weights` and reads its interval with `percentile_interval`. Pure numpy, no
Django.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
# Replicates unless a use says otherwise (and says why next to its own count): enough for the 2.5th and 97.5th
# percentiles to move by less than the figures' shown precision from one seed to another.
REPLICATES = 1000
# An interval needs at least this many usable replicates, and at least half of those drawn: when a statistic is
# undefined on most resamples (κ with one class drawn, α with one value), the percentiles of the few defined ones
# describe those resamples, not the data, so no interval is shown.
MIN_USABLE = 20


def resamples(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """replicates × n indices of units drawn with replacement: one row per bootstrap resample."""
    return rng.integers(0, n, size=(replicates, n))


def resample_weights(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """replicates × n: how often each unit is drawn in each resample (the same draws as `resamples`), so that a
    replicate's sums are one matrix product with the units' values."""
    picks = resamples(rng, n, replicates) + n * np.arange(replicates)[:, None]
    return np.bincount(picks.ravel(), minlength=replicates * n).reshape(replicates, n).astype(float)


def percentile_interval(values: np.ndarray, replicates: int, *, level: float = LEVEL) -> tuple[float, float] | None:
    """The percentile interval of a statistic's replicates, or None when too few are usable. `values` may hold
    every replicate (NaN or infinite where the statistic is undefined) or only the usable ones; `replicates` is
    how many were drawn."""
    values = np.asarray(values, dtype=float)
    usable = values[np.isfinite(values)]
    if len(usable) < max(MIN_USABLE, replicates // 2):
        return None
    low, high = np.percentile(usable, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)
