"""The cell frame that every statistic of analysis/ reads, and the helpers they share.

Everything here is a pure function of a **cell frame**: one row per condition × question with the condition
axes (`model, dataset, k, cot, system_prompt, temperature`, optionally `experiment`), `question`, `n` (judged
transcripts) and `misaligned` (how many of them are misaligned). Cells are what keeps the statistics fast at
1M transcripts: a study of 4 models × 4 datasets × 10 k × 2 prompts × 2 CoT modes × 48 questions is 30,720
cells whatever the number of samples. The paired tests need matched-pair counts (`PairCounts`), which
`analysis/tidy.py` counts in SQL and `paired_comparisons` from transcript rows (question, seed, misaligned).

Why the question is the unit: samples of one question are correlated (a question either tends to elicit a
misaligned answer or not), and a result has to generalise over questions, not over more samples of the same
ones. So the intervals resample questions, and the logistic model's errors are clustered by question. A binomial
GLM on (misaligned, n − misaligned) per cell has exactly the row-level Bernoulli GLM's likelihood, and since cells
are nested in questions its question-clustered sandwich is the row-level one too (each question's score is the
sum of its cells' scores); only the finite-sample factor counts rows, so it is applied with the row count.

No Django here (the axis names come from analysis.axes, plain data): `analysis/tidy.py` builds the frames
from the database, `manage.py analyze` from a CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from .axes import AXIS_NAMES as AXES

if TYPE_CHECKING:
    import pandas as pd

EXPERIMENT = "experiment"  # an optional axis: cells of several experiments are never pooled
CELL_COLUMNS = (*AXES, "question", "n", "misaligned")
ROW_COLUMNS = (*AXES, "question", "seed", "misaligned")
# Bootstrap replicates here (twice analysis.bootstrap.REPLICATES): these are the intervals a paper quotes, and the
# k-at-target bounds are order statistics of replicates that may be ±inf, whose 2.5% tails should hold 50
# replicates each; every replicate of every condition is one matrix product, so the extra ones cost little.
REPLICATES = 2000


def condition_axes(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a condition in this frame."""
    return [*AXES, EXPERIMENT] if EXPERIMENT in frame.columns else list(AXES)


def native(value: Any) -> Any:
    """numpy scalars as Python values, so results go to JSON as they are."""
    return value.item() if isinstance(value, np.generic) else value


def key_of(axes: Sequence[str], values: Any) -> dict[str, Any]:
    values = values if isinstance(values, tuple) else (values,)
    return {axis: native(value) for axis, value in zip(axes, values, strict=True)}


def cells_from_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy transcript rows (one per transcript, `misaligned` 0/1 or missing when not judged) → cells."""
    keys = [*condition_axes(frame), "question"]
    cells = (
        frame.groupby(keys, sort=True, dropna=False)["misaligned"]
        .agg(n="count", misaligned="sum")
        .reset_index()
    )
    return cells.astype({"n": "int64", "misaligned": "int64"})


def judged(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["n"] > 0]


def one_blas_thread() -> threadpool_limits:
    """The matrices here are narrow (a dozen columns, or 48 questions), so OpenBLAS's threads gain little, and on
    a busy 2-core server they spin waiting for each other: the logistic fit of a 1M-transcript study took 1.6 s
    with them and 0.4 s without, a 2,000 × 48 bootstrap product 50 ms instead of 0.1 ms."""
    return threadpool_limits(limits=1, user_api="blas")


def sums_table(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sums of `values` by (row code, column code): e.g. misaligned per condition × question."""
    table = np.zeros(shape)
    np.add.at(table, (rows, columns), values)
    return table
