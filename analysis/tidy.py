"""The database side of the statistics: cell and row frames for `analysis.statistics` from transcripts.

Cells come from `transcripts.aggregates.cell_counts` (the one way pages read verdict counts), so building them
costs one aggregate query plus two small lookups (conditions and question keys), whatever the number of
transcripts. Paired tests get matched-pair counts, counted in SQL from an index, never transcript rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Count, QuerySet

from transcripts.aggregates import cell_counts
from transcripts.models import Condition, Question, Transcript

from .axes import AXES, AXIS_FIELDS
from .cells import CELL_COLUMNS, EXPERIMENT
from .paired import PairCounts

if TYPE_CHECKING:
    import pandas as pd

CONDITION_FIELDS = ("id", "experiment_id", *AXIS_FIELDS)


def _axes(condition: dict[str, Any]) -> dict[str, Any]:
    """A condition's axes as the statistics name them (from a `.values(*CONDITION_FIELDS)` dict)."""
    return {**{axis.name: condition[axis.field] for axis in AXES}, EXPERIMENT: condition["experiment_id"]}


def condition_key(condition: Condition) -> dict[str, Any]:
    """The axis values that select this condition in frames built here (a side of a paired test)."""
    return _axes({field: getattr(condition, field) for field in CONDITION_FIELDS})


def cells_for(transcripts: QuerySet) -> pd.DataFrame:
    """One row per condition × question among `transcripts`: the condition axes (with `experiment`, the
    experiment's id), `question` (its key), `n` judged and `misaligned`, plus `condition_id` and `question_id`
    for links back to the transcripts."""
    import pandas as pd  # imported when used: see analysis/__init__.py

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


# The 2 × 2 table of two conditions' judged transcripts matched on (question, seed). It reads the
# transcript_paired index only (condition, question, seed → misaligned): a merge join of two index ranges,
# whatever the size of the table. One plain query per pair, which PostgreSQL and SQLite both run.
PAIR_COUNTS = """
SELECT count(*) FILTER (WHERE x.misaligned AND y.misaligned),
    count(*) FILTER (WHERE x.misaligned AND NOT y.misaligned),
    count(*) FILTER (WHERE NOT x.misaligned AND y.misaligned),
    count(*) FILTER (WHERE NOT x.misaligned AND NOT y.misaligned)
FROM {table} AS x JOIN {table} AS y ON y.question_id = x.question_id AND y.seed = x.seed
WHERE x.condition_id = %s AND y.condition_id = %s AND x.misaligned IS NOT NULL AND y.misaligned IS NOT NULL
"""


def matched_pair_counts(pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], PairCounts]:
    """For each (condition id a, condition id b): their judged transcripts matched on question and sample seed,
    counted (what McNemar needs). Assumes a condition has one transcript per (question, seed), as generation
    makes them; duplicates would count as several pairs."""
    if not pairs:
        return {}
    judged = dict(
        Transcript.objects.filter(condition_id__in={c for pair in pairs for c in pair}, misaligned__isnull=False)
        .order_by().values_list("condition_id").annotate(n=Count("pk")).values_list("condition_id", "n")
    )
    sql = PAIR_COUNTS.format(table=connection.ops.quote_name(Transcript._meta.db_table))
    rows = []
    with connection.cursor() as cursor:
        for a, b in pairs:
            cursor.execute(sql, [a, b])
            rows.append((a, b, *cursor.fetchone(), judged.get(a, 0), judged.get(b, 0)))
    return {
        (a, b): PairCounts(both, only_a, only_b, neither, unmatched_a=n_a - (both + only_a + only_b + neither),
                           unmatched_b=n_b - (both + only_a + only_b + neither))
        for a, b, both, only_a, only_b, neither, n_a, n_b in rows
    }
