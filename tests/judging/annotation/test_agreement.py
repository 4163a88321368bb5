"""Agreement statistics against published worked examples."""

import krippendorff
import numpy as np
import pytest

from judging.annotation.agreement import bootstrap_alphas, compute, rater_vs_reference

# Fleiss (1971) via Wikipedia, "Fleiss' kappa", Worked example: 10 subjects, 14 raters, 5 categories;
# each row gives how many raters put the subject in categories 1..5. Published κ = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]

# Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, nominal values, "." = missing. Published nominal α = 0.743.
KRIPPENDORFF_2011 = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}


def fleiss_rows() -> list[tuple[str, str, str]]:
    rows = []
    for subject, counts in enumerate(FLEISS_TABLE):
        rater = 0
        for category, n in enumerate(counts, start=1):
            for _ in range(n):
                rows.append((f"s{subject}", f"r{rater}", str(category)))
                rater += 1
    return rows


def krippendorff_rows(missing_as_empty: bool = False) -> list[tuple[str, str, str]]:
    rows = []
    for observer, values in KRIPPENDORFF_2011.items():
        for unit, value in enumerate(values.split(), start=1):
            if value != ".":
                rows.append((f"u{unit}", observer, value))
            elif missing_as_empty:
                rows.append((f"u{unit}", observer, ""))
    return rows


def cohen_rows() -> list[tuple[str, str, str]]:
    # Wikipedia, "Cohen's kappa", simple example: 50 grant proposals, readers A and B; Yes/Yes 20,
    # Yes/No 5, No/Yes 10, No/No 15. p_o = 0.7, p_e = 0.5, κ = 0.4.
    cells = [("Yes", "Yes", 20), ("Yes", "No", 5), ("No", "Yes", 10), ("No", "No", 15)]
    rows, n = [], 0
    for a, b, count in cells:
        for _ in range(count):
            rows += [(f"p{n}", "A", a), (f"p{n}", "B", b)]
            n += 1
    return rows


def test_it_matches_the_fleiss_worked_example():
    result = compute(fleiss_rows(), categories=list("12345"), n_boot=50)
    assert result["fleiss_kappa"] == pytest.approx(0.210, abs=0.0005)
    assert result["n_items"] == 10 and result["n_annotators"] == 14


def test_it_matches_krippendorffs_nominal_example_with_missing_data():
    result = compute(krippendorff_rows(), n_boot=200)
    assert result["krippendorff_alpha"] == pytest.approx(0.743, abs=0.0005)
    low, high = result["krippendorff_alpha_ci95"]
    assert low < 0.743 < high <= 1.0
    # Unequal labels per item: Fleiss is undefined, reported as null with a reason, not a crash.
    assert result["fleiss_kappa"] is None
    assert any("unequal" in note for note in result["notes"])


def test_it_treats_empty_cells_as_missing():
    assert compute(krippendorff_rows(missing_as_empty=True), n_boot=10)["krippendorff_alpha"] == pytest.approx(
        0.743, abs=0.0005
    )


def test_it_matches_the_cohen_textbook_example():
    result = compute(cohen_rows(), n_boot=10)
    assert result["cohen_kappa"] == [{"a": "A", "b": "B", "kappa": pytest.approx(0.4), "n_items": 50}]
    assert result["percent_agreement"] == pytest.approx(0.7)
    # Two raters on every item: Fleiss' κ is defined too (and close to Cohen's for two raters).
    assert result["fleiss_kappa"] == pytest.approx(0.4, abs=0.02)


def test_it_reports_undefined_statistics_as_null_with_notes():
    result = compute([("i1", "a", "x"), ("i1", "b", "x"), ("i2", "a", "x")], n_boot=10)
    assert result["krippendorff_alpha"] is None and result["fleiss_kappa"] is None
    assert result["cohen_kappa"][0]["kappa"] is None
    assert len(result["notes"]) >= 3
    assert compute([], n_boot=10)["n_items"] == 0


def test_it_builds_a_judge_vs_human_confusion_matrix():
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("a", "")]
    result = rater_vs_reference(pairs, ["a", "b"])
    assert result["n"] == 4
    assert result["matrix"] == [[1, 1], [0, 2]]
    assert result["kappa"] == pytest.approx(0.5)


def test_the_bootstrap_interval_matches_resampling_items_with_krippendorff():
    # Independent computation: the plain bootstrap, krippendorff.alpha called on every resampled matrix.
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4, 300)
    matrix = np.full((3, 300), np.nan)
    for rater in range(3):
        labels = np.where(rng.random(300) < 0.35, rng.integers(0, 4, 300), truth).astype(float)
        labels[rng.random(300) < 0.3] = np.nan  # missing labels, and some items with a single one
        matrix[rater] = labels
    draw = np.random.default_rng(8)
    plain = [
        krippendorff.alpha(matrix[:, draw.integers(0, 300, 300)], level_of_measurement="nominal",
                           value_domain=[0, 1, 2, 3])
        for _ in range(1500)
    ]
    fast = bootstrap_alphas(matrix, 4, 1500, np.random.default_rng(9))
    assert len(fast) == 1500
    assert np.percentile(fast, [2.5, 50, 97.5]) == pytest.approx(np.percentile(plain, [2.5, 50, 97.5]), abs=0.01)
    assert np.std(fast) == pytest.approx(np.std(plain), rel=0.1)


def test_the_bootstrap_leaves_out_resamples_where_alpha_is_undefined():
    # One item in two categories, 99 in one: a resample without the mixed item has a single value (α undefined).
    matrix = np.array([[0.0] * 99 + [0.0], [0.0] * 99 + [1.0]])
    fast = bootstrap_alphas(matrix, 2, 1000, np.random.default_rng(0))
    # P(the mixed item is never drawn in 100 draws) = 0.99^100 ≈ 0.366
    assert 1000 - len(fast) == pytest.approx(366, abs=60)
    assert np.all(np.isfinite(fast))


def test_the_array_statistics_equal_the_libraries_on_raw_labels():
    # Independent: brute-force pairs, statsmodels' aggregate_raters and scikit-learn on the string labels.
    from itertools import combinations

    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    rng = np.random.default_rng(3)
    cats = ["a", "b", "c", "d"]
    labels = {(f"i{i}", r): cats[rng.integers(0, 4)] if rng.random() < 0.4 else cats[i % 4]
              for i in range(400) for r in ("r1", "r2", "r3")}
    result = compute([(i, r, label) for (i, r), label in labels.items()], categories=cats, n_boot=10)
    shares = []
    for i in range(400):
        values = [labels[(f"i{i}", r)] for r in ("r1", "r2", "r3")]
        shares.append(sum(a == b for a, b in combinations(values, 2)) / 3)
    assert result["percent_agreement"] == pytest.approx(np.mean(shares))
    codes = np.array([[cats.index(labels[(f"i{i}", r)]) for r in ("r1", "r2", "r3")] for i in range(400)])
    assert result["fleiss_kappa"] == pytest.approx(fleiss_kappa(aggregate_raters(codes, n_cat=4)[0]))
    r1 = [labels[(f"i{i}", "r1")] for i in range(400)]
    r2 = [labels[(f"i{i}", "r2")] for i in range(400)]
    assert result["cohen_kappa"][0]["kappa"] == pytest.approx(cohen_kappa_score(r1, r2))
    binary = np.array([[1.0 if labels[(f"i{i}", r)] == "b" else 0.0 for i in range(400)] for r in ("r1", "r2", "r3")])
    assert result["per_category"][1]["alpha"] == pytest.approx(
        krippendorff.alpha(binary, level_of_measurement="nominal"))
