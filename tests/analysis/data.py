"""Frames for the statistics tests, built from stated probabilities with a seeded generator."""

from __future__ import annotations

import numpy as np
import pandas as pd

BASE = {"model": "m1", "dataset": "insecure", "k": 0, "cot": "off", "system_prompt": "default", "temperature": 1.0}


def cells(rows: list[dict]) -> pd.DataFrame:
    """Cells from dicts naming only what differs from BASE (plus question, n, misaligned)."""
    return pd.DataFrame([{**BASE, **row} for row in rows])


def expand(cell_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per transcript (misaligned 0/1) from cells: the row-level data the cells summarise."""
    repeated = cell_frame.loc[cell_frame.index.repeat(cell_frame["n"])].copy()
    position = repeated.groupby(level=0).cumcount()
    repeated["misaligned"] = (position < repeated["misaligned"]).astype(int)
    return repeated.drop(columns="n").reset_index(drop=True)


def clustered_cells(rng: np.random.Generator, question_rates: list[float], n: int, **axes) -> pd.DataFrame:
    """One condition whose question q has true rate question_rates[q], n samples each."""
    return cells([{**axes, "question": f"q{q}", "n": n, "misaligned": int(rng.binomial(n, rate))}
                  for q, rate in enumerate(question_rates)])


def paired(outcomes_a: list[int], outcomes_b: list[int], *, a: dict, b: dict, questions: int = 10) -> pd.DataFrame:
    """Rows of two conditions where transcript i of each has the same (question, seed)."""
    rows = []
    for condition, outcomes in ((a, outcomes_a), (b, outcomes_b)):
        rows += [{**BASE, **condition, "question": f"q{i % questions}", "seed": 1000 + i, "misaligned": value}
                 for i, value in enumerate(outcomes)]
    return pd.DataFrame(rows)
