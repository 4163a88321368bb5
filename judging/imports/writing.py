"""Checking a staged file's slots and writing its rows, in set-based SQL over the staging table: transcripts with
their verdict cache computed in the same INSERT (judging.verdicts.cache_columns_sql), imported JudgeScores, and
then the experiments' verdict cache and counts settled."""

from __future__ import annotations

from django.db import connection, models
from django.utils import timezone

from transcripts import aggregates
from transcripts.importing import ImportFailed
from transcripts.models import Experiment, Transcript

from .. import verdicts
from ..models import ExperimentJudging, JudgeScore, RubricVersion
from .records import METRICS
from .resolution import Resolved
from .staging import STAGE, Staging


def _insert_select(model: type[models.Model], expressions: dict[str, str | tuple[str, list]], values: dict,
                   source: str) -> int:
    """INSERT INTO model's table SELECT … FROM source: fields from SQL `expressions` over the source (SQL, or
    SQL and its params), from `values`, or else their model default (Django's defaults are not database
    defaults, so each is passed)."""
    columns, selected, params = [], [], []
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key and model_field.name not in expressions:
            continue
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.name in expressions:
            sql, sql_params = expressions[model_field.name] if isinstance(expressions[model_field.name], tuple) \
                else (expressions[model_field.name], [])
            selected.append(sql)
            params += sql_params
        else:
            selected.append("%s")
            value = values[model_field.name] if model_field.name in values else model_field.get_default()
            params.append(model_field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
            f"SELECT {', '.join(selected)} FROM {source}",
            params,
        )
        return cursor.rowcount


# The staging rows with their condition and question ids, the source of every statement below.
SLOTS = (
    f"{STAGE} s JOIN import_conditions c ON c.cond = s.cond JOIN import_questions q ON q.qkey = s.qkey"
)
# The stored transcripts of the staged slots. The IN is implied by the join, but said outright it lets the
# planner read only the file's conditions (by index) instead of the whole transcript table.
STORED = (
    f"{Transcript._meta.db_table} t ON t.condition_id = c.condition_id AND t.question_id = q.question_id "  # noqa: S608
    "AND t.sample_index = s.sample AND t.condition_id IN (SELECT condition_id FROM import_conditions)"
)


def write_keys(resolved: Resolved) -> None:
    """The small tables that map the staging table's numbers to conditions, questions and paraphrases."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE import_conditions "
            "(cond integer, condition_id bigint, experiment_id bigint, stored boolean)"
        )
        cursor.execute("CREATE TEMPORARY TABLE import_questions (qkey integer, question_id bigint)")
        cursor.execute("CREATE TEMPORARY TABLE import_paraphrases (question_id bigint, text text, position integer)")
        cursor.executemany(
            "INSERT INTO import_conditions VALUES (%s, %s, %s, %s)",
            [(n, c.pk, c.experiment_id, n in resolved.stored) for n, c in resolved.conditions.items()],
        )
        cursor.executemany(
            "INSERT INTO import_questions VALUES (%s, %s)", [(n, q.pk) for n, q in resolved.questions.items()]
        )
        paraphrases = {
            (question.pk, text): position
            for question in {q.pk: q for q in resolved.questions.values()}.values()
            for position, text in reversed(list(enumerate(question.paraphrases)))  # the first position wins
        }
        cursor.executemany(
            "INSERT INTO import_paraphrases VALUES (%s, %s, %s)", [(*key, p) for key, p in paraphrases.items()]
        )
        # Temporary tables get no statistics by themselves; without them the planner guesses their sizes
        # wrong by orders of magnitude and picks plans that read the whole transcript table.
        for table in (STAGE, "import_conditions", "import_questions", "import_paraphrases"):
            cursor.execute(f"ANALYZE {table}")


def check_slots(file: str, staging: Staging, resolved: Resolved) -> int:
    """Fail on the first line that repeats a slot of the file or changes a stored one; drop the staged rows
    whose slot is stored with the same answer, and return how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT line, first_line FROM (SELECT s.line, MIN(s.line) OVER "  # noqa: S608 — constants
            f"(PARTITION BY c.condition_id, q.question_id, s.sample) AS first_line FROM {SLOTS}) AS slots "
            "WHERE line <> first_line ORDER BY line LIMIT 1"
        )
        repeated = cursor.fetchone()
        if repeated:
            raise ImportFailed(
                file, f"the same slot (model, dataset, k, question, sample) is on line {repeated[1]} already",
                line=repeated[0], field="sample",
            )
        if not resolved.stored:
            return 0
        cursor.execute(
            f"SELECT s.line, s.qkey, s.sample FROM {SLOTS} JOIN {STORED} WHERE c.stored "  # noqa: S608
            "AND (t.answer <> s.answer OR t.reasoning <> s.reasoning) ORDER BY s.line LIMIT 1"
        )
        changed = cursor.fetchone()
        if changed:
            line, qkey, sample = changed
            raise ImportFailed(
                file,
                f"this slot (model, dataset, k, question {resolved.questions[qkey].key}, sample {sample}) was "
                "already imported with a different answer",
                line=line,
                field="answer",
            )
        cursor.execute(
            f"DELETE FROM {STAGE} WHERE line IN (SELECT s.line FROM {SLOTS} JOIN {STORED} WHERE c.stored)"  # noqa: S608
        )
        return cursor.rowcount


def _number_rows() -> None:
    """Give each staged row its transcript id, in file order (import_ids: line → id), so that the scores are
    inserted straight from the staging table: finding the new transcripts' ids by their slots instead was a
    hash join over the whole transcript table per metric (1.5 s each at 1M rows, and growing with the table).
    On PostgreSQL the ids come from the table's sequence, as concurrent inserts take theirs; SQLite's one
    writer at a time may count on from the largest id."""
    table = Transcript._meta.db_table
    if connection.vendor == "postgresql":
        # nextval runs over the sorted subquery's rows, in line order.
        next_id = f"nextval(pg_get_serial_sequence('{table}', 'id'))"
        source = f"(SELECT line FROM {STAGE} ORDER BY line) AS o"  # noqa: S608 — constants
    else:
        next_id = f"(SELECT COALESCE(MAX(id), 0) FROM {table}) + ROW_NUMBER() OVER (ORDER BY line)"  # noqa: S608
        source = STAGE
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE import_ids AS SELECT line, {next_id} AS id FROM {source}")  # noqa: S608
        cursor.execute("ANALYZE import_ids")


def write_rows(rubric_versions: dict[str, RubricVersion]) -> tuple[int, int]:
    """Insert the staged rows as done transcripts (their ids in file order) and their imported scores;
    returns (transcripts, scores).

    Each transcript is inserted with its verdict cache under the imported scores (a staged metric without a
    score has a NULL outcome, as a missing verdict): a transcript row carries many indexes, so writing it once
    instead of inserting and then updating it halves the dearest part of an import. `_settle_verdicts` makes
    the imported versions active, or has the verdict writer rewrite the cache where other versions are."""
    now = timezone.now()
    cache = verdicts.cache_columns_sql(
        "s.aligned_outcome", "s.aligned_score", "s.coherent_outcome", "s.coherent_score",
        thresholds=("e.aligned_threshold", "e.coherent_threshold"),
    )
    experiments = connection.ops.quote_name(Experiment._meta.db_table)
    _number_rows()
    created = _insert_select(
        Transcript,
        {
            "id": "n.id", "experiment": "c.experiment_id", "condition": "c.condition_id", "question": "q.question_id",
            "sample_index": "s.sample", "paraphrase_index": "COALESCE(p.position, 0)",
            "reasoning": "s.reasoning", "answer": "s.answer", **cache,
        },
        {"status": Transcript.Status.DONE, "finished_at": now, "created_at": now},
        f"{SLOTS} JOIN import_ids n ON n.line = s.line JOIN {experiments} e ON e.id = c.experiment_id "
        # No ORDER BY: the ids already follow the file, and sorting the wide rows spilled them all to disk.
        "LEFT JOIN import_paraphrases p ON p.question_id = q.question_id AND p.text = s.question",
    )
    # JudgeScore.top_logprobs is jsonb on PostgreSQL and JSON text on SQLite.
    json_cast = "::jsonb" if connection.vendor == "postgresql" else ""
    scores = 0
    for metric, version in rubric_versions.items():
        scores += _insert_select(
            JudgeScore,
            {
                "transcript": "n.id", "outcome": f"s.{metric}_outcome", "score": f"s.{metric}_score",
                "top_logprobs": f"s.{metric}_logprobs{json_cast}",
            },
            {
                "rubric_version": version.pk, "status": JudgeScore.Status.DONE,
                "method": JudgeScore.Method.IMPORTED, "finished_at": now, "created_at": now,
            },
            f"{STAGE} s JOIN import_ids n ON n.line = s.line WHERE s.{metric}_has",
        )
    return created, scores


def drop_staging() -> None:
    with connection.cursor() as cursor:
        for table in (STAGE, "import_conditions", "import_questions", "import_paraphrases", "import_ids"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


def settle_verdicts(experiment: Experiment, created: bool, rubric_versions: dict[str, RubricVersion],
                     resolved: Resolved) -> None:
    """Make the experiment's verdict cache and counts hold after its transcripts were inserted with their
    cache under the imported versions (`_write_rows`). A new imported experiment is judged by the versions its
    scores came with (the EM paper's), so that cache stands; so it does where those are already the active
    ones, or where the file had no scores (no verdict under any version). An existing experiment without
    versions gets them through the verdict writer, which rewrites its older transcripts; one whose versions a
    researcher has set keeps them, and the writer rewrites the new transcripts to them. The groups the file
    wrote to are then recounted once."""
    judging = ExperimentJudging.objects.filter(experiment=experiment).first()
    imported = [rubric_versions.get(metric) for metric in METRICS]
    if rubric_versions and (judging is None or not judging.versions):
        if created:
            ExperimentJudging.objects.create(
                experiment=experiment, **{f"{metric}_version": version for metric, version in rubric_versions.items()}
            )
        else:
            verdicts.set_active_versions(experiment, **rubric_versions)
    elif rubric_versions and [judging.aligned_version, judging.coherent_version] != imported:
        verdicts.refresh_cache(experiment)
    aggregates.refresh_groups(
        (condition.pk, question.pk)
        for condition in resolved.conditions.values() if condition.experiment_id == experiment.pk
        for question in resolved.questions.values()
    )
