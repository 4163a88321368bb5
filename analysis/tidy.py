"""The database side of the statistics: cell and row frames for `analysis.statistics` from transcripts.

Cells come from `transcripts.aggregates.cell_counts` (the one way pages read verdict counts), so building them
costs one aggregate query plus two small lookups (conditions and question keys), whatever the number of
transcripts. Rows (for paired tests) are read only for the conditions a test compares.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.db.models import QuerySet

from transcripts.aggregates import cell_counts
from transcripts.models import Condition, Question, Transcript

from .statistics import CELL_COLUMNS, EXPERIMENT, ROW_COLUMNS

CONDITION_FIELDS = ("id", "experiment_id", "model_name", "dataset_name", "k", "cot_mode", "system_prompt_name",
                    "temperature")


def _axes(condition: dict[str, Any]) -> dict[str, Any]:
    """A condition's axes as the statistics name them (from a `.values(*CONDITION_FIELDS)` dict)."""
    return {
        "model": condition["model_name"], "dataset": condition["dataset_name"], "k": condition["k"],
        "cot": condition["cot_mode"], "system_prompt": condition["system_prompt_name"],
        "temperature": condition["temperature"], EXPERIMENT: condition["experiment_id"],
    }


def condition_key(condition: Condition) -> dict[str, Any]:
    """The axis values that select this condition in frames built here (a side of a paired test)."""
    return _axes({field: getattr(condition, field) for field in CONDITION_FIELDS})


def cells_for(transcripts: QuerySet) -> pd.DataFrame:
    """One row per condition × question among `transcripts`: the condition axes (with `experiment`, the
    experiment's id), `question` (its key), `n` judged and `misaligned`, plus `condition_id` and `question_id`
    for links back to the transcripts."""
    counts = cell_counts(transcripts)
    conditions = {c["id"]: _axes(c) for c in Condition.objects.filter(
        pk__in={row["condition_id"] for row in counts}).values(*CONDITION_FIELDS)}
    keys = dict(Question.objects.filter(pk__in={row["question_id"] for row in counts}).values_list("id", "key"))
    records = [
        {**conditions[row["condition_id"]], "question": keys[row["question_id"]], "n": row["n"],
         "misaligned": row["misaligned"], "condition_id": row["condition_id"], "question_id": row["question_id"]}
        for row in counts
    ]
    columns = [*CELL_COLUMNS, EXPERIMENT, "condition_id", "question_id"]
    return pd.DataFrame.from_records(records, columns=columns).astype({"n": "int64", "misaligned": "int64"})


def paired_rows(*conditions: Condition) -> pd.DataFrame:
    """The judged transcripts of these conditions (the two sides of a paired test, or the sides of several),
    one row each: condition axes, question key, seed, misaligned. One query over the conditions' index."""
    axes = {condition.pk: condition_key(condition) for condition in conditions}
    transcripts = Transcript.objects.filter(
        condition_id__in=list(axes), misaligned__isnull=False
    ).values_list("condition_id", "question__key", "seed", "misaligned")
    records = [{**axes[condition_id], "question": key, "seed": seed, "misaligned": int(misaligned)}
               for condition_id, key, seed, misaligned in transcripts.order_by()]
    return pd.DataFrame.from_records(records, columns=[*ROW_COLUMNS, EXPERIMENT])
