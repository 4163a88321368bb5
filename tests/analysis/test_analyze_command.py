"""`manage.py analyze --csv FILE [--json]` on CSV files written here."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from statsmodels.stats.proportion import proportion_confint

from analysis.cells import ROW_COLUMNS
from tests.conftest import ROOT


def write_csv(path, rows, columns=ROW_COLUMNS):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def study_rows() -> list[dict]:
    """Two models × k ∈ {0, 8, 64} × 12 questions × 5 seeds, the seeds shared across conditions."""
    rng = np.random.default_rng(7)
    rows = []
    for model, base in (("m1", 0.03), ("m2", 0.08)):
        for k in (0, 8, 64):
            rate = base * (1 + np.log2(k + 1) / 2)
            for q in range(12):
                for seed in range(5):
                    rows.append({"model": model, "dataset": "insecure", "k": k, "cot": "off",
                                 "system_prompt": "default", "temperature": 1.0, "question": f"q{q}",
                                 "seed": 100 * q + seed, "misaligned": int(rng.random() < rate)})
    return rows


def run(*args) -> str:
    out = io.StringIO()
    call_command("analyze", *args, stdout=out)
    return out.getvalue()


def test_json_output_has_every_statistic(tmp_path):
    rows = study_rows()
    result = json.loads(run("--csv", str(write_csv(tmp_path / "study.csv", rows)), "--json", "--n-boot", "300"))
    assert set(result) == {"n", "misaligned", "n_questions", "conditions", "logistic", "dose_response", "paired"}
    assert result["n"] == len(rows) and result["n_questions"] == 12
    first = result["conditions"][0]
    assert set(first) == {"condition", "n", "count", "rate", "wilson", "clustered", "n_questions", "assumes"}
    assert first["condition"] == {"model": "m1", "dataset": "insecure", "k": 0, "cot": "off",
                                  "system_prompt": "default", "temperature": 1.0}
    count = sum(r["misaligned"] for r in rows if r["model"] == "m1" and r["k"] == 0)
    assert first["wilson"] == pytest.approx(list(proportion_confint(count, 60, method="wilson")))
    assert {"estimable", "reason", "odds_ratios", "terms", "dropped_terms", "assumes"} <= set(result["logistic"])
    assert [d["group"]["model"] for d in result["dose_response"]] == ["m1", "m2"]
    assert {t["target"] for t in result["dose_response"][0]["targets"]} == {0.05, 0.1}
    # 2 models × 3 k: each model's 3 k pairs, and m1 vs m2 at each k; all share the seeds.
    assert len(result["paired"]) == 9
    assert all(p["n_pairs"] == 60 and p["p_holm"] >= p["p_value"] for p in result["paired"])


def test_text_output_is_a_readable_table(tmp_path):
    text = run("--csv", str(write_csv(tmp_path / "study.csv", study_rows())), "--n-boot", "200")
    assert "Per condition" in text and "Logistic model" in text and "Dose-response" in text
    assert "k 0 → 64 (model=m1" in text


@pytest.mark.parametrize(("line", "column", "value", "message"), [
    (3, "misaligned", "yes", "line 3, column misaligned: expected 0 or 1, got 'yes'"),
    (5, "k", "-1", "line 5, column k: expected a whole number ≥ 0, got '-1'"),
    (4, "temperature", "nan", "line 4, column temperature: expected a number, got 'nan'"),
    (2, "question", "", "line 2, column question: empty"),
])
def test_a_bad_value_names_its_line_and_column(tmp_path, line, column, value, message):
    rows = study_rows()
    rows[line - 2][column] = value  # line 1 is the header
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(CommandError, match=message):
        run("--csv", str(path))


def test_a_missing_column_is_named(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [{c: 1 for c in ROW_COLUMNS if c != "seed"}],
                     columns=[c for c in ROW_COLUMNS if c != "seed"])
    with pytest.raises(CommandError, match="line 1: missing column\\(s\\) seed"):
        run("--csv", str(path))


def test_the_command_exits_non_zero_on_bad_input(tmp_path):
    rows = study_rows()
    rows[5]["misaligned"] = "2"
    path = write_csv(tmp_path / "bad.csv", rows)
    finished = subprocess.run([sys.executable, "manage.py", "analyze", "--csv", str(path), "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    assert "line 7, column misaligned: expected 0 or 1, got '2'" in finished.stderr
    assert finished.stdout == ""
