"""Inter-annotator agreement on a long-format table of nominal labels.

Pure functions, shared by the queue agreement page and `manage.py agreement`. The input is a list of
`(item, annotator, label)` rows; a missing label is an absent row (or an empty label, which is dropped).
The statistics come from krippendorff and statsmodels; Cohen's κ is `kappa_of_tables` on count tables built by
`count_tables` (vectorised over bootstrap resamples, which scikit-learn's is not), for every rater-vs-rater
figure of the app. Only bookkeeping is done here. Where a statistic is undefined for the data it is None and
`notes` says why.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import krippendorff
import numpy as np

from analysis.bootstrap import REPLICATES, percentile_interval


def clean_rows(rows: Iterable[Sequence]) -> dict[tuple[str, str], str]:
    """{(item, annotator): label} as strings, without empty labels; a repeated (item, annotator) keeps its
    last label."""
    latest: dict[tuple[str, str], str] = {}
    for item, annotator, label in rows:
        label = "" if label is None else str(label).strip()
        if label:
            latest[(str(item), str(annotator))] = label
    return latest


def finite(value: float | None) -> float | None:
    """The value as a float, None when it is None, NaN or infinite (an undefined statistic)."""
    return None if value is None or not math.isfinite(value) else float(value)


def count_tables(a: np.ndarray, b: np.ndarray, n_labels: int, *, counts: np.ndarray | None = None,
                 resamples: np.ndarray | None = None) -> np.ndarray:
    """The (rater A label × rater B label) count table of paired label codes 0 … n_labels − 1: the one place such
    tables are built. `counts`: how many times each pair occurs (pairs counted in SQL). `resamples`: bootstrap
    resamples of the pairs (replicates × pairs indices, analysis.bootstrap.resamples), giving one table per
    replicate, shape (replicates, L, L), in one bincount (a scikit-learn call per resample took 20 s at 1,000
    resamples of 10,000 items)."""
    cells = np.asarray(a, dtype=int) * n_labels + np.asarray(b, dtype=int)
    size = n_labels * n_labels
    if resamples is None:
        return np.bincount(cells, weights=counts, minlength=size).reshape(n_labels, n_labels)
    draws = cells[resamples] + size * np.arange(len(resamples))[:, None]
    return np.bincount(draws.ravel(), minlength=size * len(resamples)).reshape(len(resamples), n_labels, n_labels)


def kappa_of_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's κ of each (rater A label × rater B label) count table, shape (..., L, L), vectorised over the
    leading axes (bootstrap resamples, threshold grids); NaN where undefined (one label only), as
    scikit-learn's cohen_kappa_score on the labels the table counts (the tests check it against that)."""
    n = tables.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(tables, axis1=-2, axis2=-1) / n
        expected = (tables.sum(axis=-1) * tables.sum(axis=-2)).sum(axis=-1) / (n * n)
        return (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class Table:
    """The labels as a reliability matrix: annotators × items of category codes (index into `categories`),
    NaN where an annotator did not label an item. Every statistic below reads it with numpy, so a queue of
    100,000 labels costs a few array passes, not Python loops per label per statistic."""

    matrix: np.ndarray
    annotators: list[str]
    items: list[str]
    categories: list[str]

    @cached_property
    def counts(self) -> np.ndarray:
        """Items × categories: how many annotators put each item in each category."""
        counts = np.zeros((len(self.items), len(self.categories)), dtype=int)
        for code in range(len(self.categories)):
            counts[:, code] = np.sum(self.matrix == code, axis=0)
        return counts


def table(labels: dict[tuple[str, str], str], categories: list[str]) -> Table:
    annotators = sorted({annotator for _, annotator in labels})
    items = sorted({item for item, _ in labels})
    a_index = {a: i for i, a in enumerate(annotators)}
    i_index = {it: j for j, it in enumerate(items)}
    c_index = {c: k for k, c in enumerate(categories)}
    matrix = np.full((len(annotators), len(items)), np.nan)
    if labels:
        rows = [a_index[a] for _, a in labels]
        matrix[rows, [i_index[it] for it, _ in labels]] = [c_index[v] for v in labels.values()]
    return Table(matrix, annotators, items, categories)


def percent_agreement(labels: Table) -> float | None:
    """Mean over items with two or more labels of the share of label pairs that agree."""
    counts = labels.counts
    m = counts.sum(axis=1)
    paired = m >= 2
    if not paired.any():
        return None
    agreeing = (counts[paired] * (counts[paired] - 1)).sum(axis=1) / 2
    return float(np.mean(agreeing / (m[paired] * (m[paired] - 1) / 2)))


def cohen_pairs(labels: Table, notes: list[str]) -> list[dict]:
    """Cohen's κ for every pair of annotators over the items both labelled."""
    result = []
    for (i, a), (j, b) in combinations(enumerate(labels.annotators), 2):
        both = ~np.isnan(labels.matrix[i]) & ~np.isnan(labels.matrix[j])
        kappa = None
        if both.sum() < 2:
            notes.append(f"Cohen's κ {a}–{b}: fewer than 2 items labelled by both.")
        else:
            pairs = count_tables(labels.matrix[i][both], labels.matrix[j][both], len(labels.categories))
            kappa = finite(kappa_of_tables(pairs))
            if kappa is None:
                notes.append(f"Cohen's κ {a}–{b}: undefined (both used a single, identical category).")
        result.append({"a": a, "b": b, "kappa": kappa, "n_items": int(both.sum())})
    return result


def fleiss(labels: Table, notes: list[str]) -> float | None:
    """Fleiss' κ; defined only when every item has the same number (≥ 2) of labels."""
    counts = labels.counts
    per_item = set(counts.sum(axis=1).tolist())
    if not labels.items:
        notes.append("Fleiss' κ: no labels.")
        return None
    if len(per_item) != 1:
        notes.append(
            f"Fleiss' κ: items have unequal numbers of labels ({min(per_item)}–{max(per_item)}); "
            "it needs the same number of raters per item (use Krippendorff's α)."
        )
        return None
    if per_item == {1}:
        notes.append("Fleiss' κ: every item has a single label.")
        return None
    from statsmodels.stats.inter_rater import fleiss_kappa  # imported when used: see analysis/__init__.py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = finite(fleiss_kappa(counts, method="fleiss"))
    if value is None:
        notes.append("Fleiss' κ: undefined (all labels are the same category).")
    return value


def _alpha(matrix: np.ndarray, value_domain: list[int]) -> float | None:
    # krippendorff raises when fewer than two values occur or no unit has two values: undefined, not an error.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return finite(krippendorff.alpha(matrix, level_of_measurement="nominal", value_domain=value_domain))
    except (ValueError, ZeroDivisionError):
        return None


def bootstrap_alphas(matrix: np.ndarray, n_values: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Nominal α of `n_boot` resamples of the matrix's items (columns, drawn with replacement), leaving out
    resamples where α is undefined.

    Calling krippendorff once per resample cost ~20 ms at 20,000 items (20 s for 1,000 resamples). Nominal α
    only needs each item's label counts, and two items with the same counts contribute the same: so the
    items are grouped into their few distinct count patterns, a resample is a multinomial draw of how many
    items of each pattern it holds (the same distribution as drawing items), and α follows from the
    coincidence-matrix sums (Krippendorff 2011, nominal): α = 1 − (n − 1) · Σ_u D_u / (n² − Σ_c n_c²),
    with, per item u of m_u ≥ 2 labels and label counts v_uc, D_u = (m_u² − Σ_c v_uc²) / (m_u − 1) and
    n_c = Σ_u v_uc over such items."""
    counts = np.stack([np.sum(matrix == value, axis=0) for value in range(n_values)], axis=1)
    patterns, frequency = np.unique(counts, axis=0, return_counts=True)
    m = patterns.sum(axis=1)
    pairable = m >= 2
    values = patterns * pairable[:, None]  # an item with a single label pairs with nothing: it adds nothing
    disagreement = np.where(pairable, (m**2 - (patterns**2).sum(axis=1)) / np.maximum(m - 1, 1), 0.0)
    draws = rng.multinomial(counts.shape[0], frequency / counts.shape[0], size=n_boot)
    n_c = draws @ values
    n = n_c.sum(axis=1)
    expected = n.astype(float) ** 2 - (n_c.astype(float) ** 2).sum(axis=1)
    defined = expected > 0
    return 1 - (n[defined] - 1) * (draws[defined] @ disagreement) / expected[defined]


def krippendorff_alpha(
    labels: Table, notes: list[str], *, n_boot: int = REPLICATES, seed: int = 0
) -> tuple[float | None, list[float] | None]:
    """Nominal α with missing data, and a bootstrap 95% interval from resampling items."""
    if not labels.items:
        notes.append("Krippendorff's α: no labels.")
        return None, None
    if not (np.sum(~np.isnan(labels.matrix), axis=0) >= 2).any():
        notes.append("Krippendorff's α: no item has two or more labels.")
        return None, None
    value = _alpha(labels.matrix, list(range(len(labels.categories))))
    if value is None:
        notes.append("Krippendorff's α: undefined (a single category in all pairable labels).")
        return None, None
    boot = bootstrap_alphas(labels.matrix, len(labels.categories), n_boot, np.random.default_rng(seed))
    interval = percentile_interval(boot, n_boot)
    if interval is None:
        notes.append("Krippendorff's α: too few resamples with a defined α for a bootstrap interval.")
        return value, None
    return value, list(interval)


def per_category(labels: Table) -> list[dict]:
    """For each category: labels using it, and Krippendorff's α of "this category or not" (binary)."""
    used = labels.counts.sum(axis=0)
    result = []
    for code, category in enumerate(labels.categories):
        binary = np.where(np.isnan(labels.matrix), np.nan, labels.matrix == code)
        alpha = _alpha(binary, [0, 1]) if used[code] else None
        result.append({"category": category, "n_labels": int(used[code]), "alpha": alpha})
    return result


def compute(rows: Iterable[Sequence], *, categories: list[str] | None = None, n_boot: int = REPLICATES) -> dict:
    """Every agreement statistic for a long-format table, as a JSON-ready dict."""
    clean = clean_rows(rows)
    notes: list[str] = []
    categories = list(categories or [])
    for label in sorted(set(clean.values())):
        if label not in categories:
            categories.append(label)
    labels = table(clean, categories)
    alpha, interval = krippendorff_alpha(labels, notes, n_boot=n_boot)
    return {
        "n_items": len(labels.items),
        "n_annotators": len(labels.annotators),
        "n_labels": len(clean),
        "categories": categories,
        "percent_agreement": percent_agreement(labels),
        "fleiss_kappa": fleiss(labels, notes),
        "krippendorff_alpha": alpha,
        "krippendorff_alpha_ci95": interval,
        "cohen_kappa": cohen_pairs(labels, notes),
        "per_category": per_category(labels),
        "notes": notes,
    }


def rater_vs_reference(pairs: list[tuple[str, str]], categories: list[str]) -> dict:
    """Cohen's κ and the confusion matrix of one rater (rows) against another (columns), e.g. judge vs human.

    Pairs with an empty side are left out. The matrix rows/columns follow `categories` plus any other label seen.
    """
    return counted_vs_reference(Counter((a, b) for a, b in pairs if a and b), categories)


def counted_vs_reference(counts: Mapping[tuple[str, str], int], categories: Sequence[str] = ()) -> dict:
    """`rater_vs_reference` from pairs already counted ((A's label, B's label) → how many items), e.g. by SQL:
    n, Cohen's κ (None when undefined: fewer than 2 items, or a single category), the labels and the matrix."""
    counts = {pair: n for pair, n in counts.items() if n}
    labels = list(categories)
    labels += sorted({value for pair in counts for value in pair} - set(labels))
    if not counts:
        return {"n": 0, "kappa": None, "labels": labels, "matrix": [], "note": "No item has both labels."}
    code = {label: i for i, label in enumerate(labels)}
    table = count_tables(np.array([code[a] for a, _ in counts]), np.array([code[b] for _, b in counts]), len(labels),
                         counts=np.array(list(counts.values()), dtype=float))
    n = int(table.sum())
    kappa = finite(kappa_of_tables(table)) if n >= 2 else None
    note = "" if kappa is not None else "κ undefined for these items (too few, or a single category)."
    return {"n": n, "kappa": kappa, "labels": labels, "matrix": table.astype(int).tolist(), "note": note}
