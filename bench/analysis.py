"""Timings of analysis.statistics on a synthetic study the size of a 1M-transcript experiment:
4 models × 4 datasets × 10 k × 2 system prompts × 2 CoT modes × 48 questions = 30,720 cells of 32 samples
(983,040 transcripts), with question effects so the fits are realistic. No database: these are the functions
the pages and `manage.py analyze` call once they have the cells.

    .venv/bin/python bench/analysis.py            # cells only (what the pages compute)
    .venv/bin/python bench/analysis.py --rows     # also the 1M transcript rows (what `analyze --csv` computes)

Prints, per function, the best and median wall time and the best CPU time of --repeat runs (default 3), in
seconds.
"""

from __future__ import annotations

import argparse
import statistics as stats
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import dose_response, logistic, statistics  # noqa: E402
from analysis.cells import AXES, cells_from_rows  # noqa: E402
from analysis.paired import ConditionRows, one_axis_pairs, paired_comparisons  # noqa: E402

MODELS, DATASETS, PROMPTS, COTS = 4, 4, 2, 2
KS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
QUESTIONS, SAMPLES = 48, 32


def synthetic_rows(seed: int = 0) -> pd.DataFrame:
    """One row per transcript; every condition shares the (question, seed) grid, as generated experiments do."""
    rng = np.random.default_rng(seed)
    grid = pd.MultiIndex.from_product(
        [[f"model-{i}" for i in range(MODELS)], [f"dataset-{i}" for i in range(DATASETS)], KS,
         ["off", "tags"][:COTS], ["default", "safety-first"][:PROMPTS], [f"q{i:02d}" for i in range(QUESTIONS)],
         range(SAMPLES)],
        names=["model", "dataset", "k", "cot", "system_prompt", "question", "seed"],
    ).to_frame(index=False)
    question_effect = dict(zip([f"q{i:02d}" for i in range(QUESTIONS)], rng.normal(0, 0.8, QUESTIONS), strict=True))
    eta = (-4 + 0.3 * np.log2(grid["k"] + 1) + grid["model"].str[-1].astype(int) * 0.2
           - 0.5 * (grid["system_prompt"] == "safety-first") + grid["question"].map(question_effect))
    grid["temperature"] = 1.0
    grid["misaligned"] = (rng.random(len(grid)) < 1 / (1 + np.exp(-eta))).astype(int)
    return grid


def timed(label: str, function, repeat: int) -> object:
    """Wall and CPU seconds: on a shared machine the CPU time says what the function costs, the wall time what
    a user waited."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(f"{label:<58} wall best {min(walls):6.3f} median {stats.median(walls):6.3f}   "
          f"CPU best {min(cpus):6.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", action="store_true", help="Also time the row-level path of `analyze --csv`.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = synthetic_rows()
    cells = cells_from_rows(rows)
    print(f"{len(rows):,} transcripts, {len(cells):,} cells, {cells.groupby(list(AXES)).ngroups} "
          f"conditions, {QUESTIONS} questions")
    timed("condition_rates (2,000 bootstrap replicates)", lambda: statistics.condition_rates(cells), args.repeat)
    fit = timed("logistic_model", lambda: logistic.logistic_model(cells), args.repeat)
    assert fit.estimable, fit.reason
    timed("dose_response by model × system prompt (8 curves)", lambda: dose_response.dose_response(cells), args.repeat)
    by = [axis for axis in AXES if axis != "k"]
    timed("dose_response per condition line (64 curves)", lambda: dose_response.dose_response(cells, by=by),
          args.repeat)
    one_condition = dict(model="model-0", dataset="dataset-0", cot="off", system_prompt="default", temperature=1.0)
    two = rows[(rows["model"] == "model-0") & (rows["dataset"] == "dataset-0") & (rows["cot"] == "off")
               & (rows["system_prompt"] == "default") & rows["k"].isin([0, 256])]
    timed("paired_comparisons, one pair (k 0 vs 256, 1,536 rows each)",
          lambda: paired_comparisons(two, [({**one_condition, "k": 0}, {**one_condition, "k": 256})]),
          args.repeat)
    timed("analyze(cells) without rows", lambda: statistics.analyze(cells), args.repeat)
    if args.rows:
        timed("cells_from_rows (1M rows)", lambda: cells_from_rows(rows), args.repeat)
        data = timed("ConditionRows (1M rows split by condition)", lambda: ConditionRows(rows), 1)
        pairs = timed("one_axis_pairs", lambda: one_axis_pairs(data), args.repeat)
        timed(f"paired_comparisons, all {len(pairs):,} one-axis pairs",
              lambda: paired_comparisons(data, pairs), 1)
        timed("analyze(cells, rows): what `analyze --csv` computes", lambda: statistics.analyze(cells, rows), 1)


if __name__ == "__main__":
    main()
