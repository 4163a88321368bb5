"""Paired comparisons: McNemar tests on transcripts matched by question and sample seed, Holm-adjusted."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import condition_axes, key_of

if TYPE_CHECKING:
    import pandas as pd

# McNemar's χ² approximation is poor with few discordant pairs; below this many the exact binomial test is used.
EXACT_BELOW = 25
PAIRED_ASSUMES = (
    "McNemar on transcripts matched by question and sample seed: only pairs where the two conditions disagree "
    "count; exact binomial test below 25 such pairs, else χ² with continuity correction. It treats pairs as "
    "independent (pairs of one question are not clustered). p-values are Holm-adjusted across the list."
)


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
                raise ValueError(f"condition {key_of(self.axes, values)} has two transcripts with the same question "
                                 f"and seed: pairs would be ambiguous")
            self.by_condition[values] = (keys, misaligned[index][order])

    def select(self, spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the one condition matching every axis value in `spec`."""
        if set(spec) == set(self.axes):
            found = [tuple(spec[axis] for axis in self.axes)]
            found = found if found[0] in self.by_condition else []
        else:
            found = [values for values in self.by_condition
                     if all(key_of(self.axes, values).get(axis) == value for axis, value in spec.items())]
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
    from statsmodels.stats.contingency_tables import mcnemar  # imported when used: see analysis/__init__.py

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
        (key_of(data.axes, first), key_of(data.axes, second)) for first, second in sorted(pairs)
        if np.intersect1d(data.by_condition[first][0], data.by_condition[second][0], assume_unique=True).size
    ]
