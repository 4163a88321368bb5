"""Import transcripts produced elsewhere, with their judge scores, so researchers can bring existing runs.

Two formats:
- JSONL, one transcript per line: `model, dataset, k, question_id, sample, answer` and optionally
  `experiment` (default: the file name), `question_set`, `question` (text), `reasoning`, `cot_mode`,
  `temperature`, `aligned`, `coherent`.
- The Emergent Misalignment results CSV (`model, group, question, answer, aligned, judge_aligned, coherent,
  judge_coherent, question_id, …`) with the judge's top-token distributions kept as imported JudgeScores.

Questions: a record that names a `question_set` must use ids of that set. Otherwise the file's ids are
matched against the first question set that holds all of them (e.g. first_plot for the EM CSV); failing
that they go into the question set "imported", created from the records' `question` text.

Files are streamed: records are parsed in chunks and written to a temporary table (COPY on PostgreSQL), with
only the file's few distinct experiments, conditions and questions kept in memory. Once the whole file has
been read, set-based SQL checks its slots and moves the rows into transcripts, with their verdict cache
computed in the same INSERT by the verdict writer's rules (judging.verdicts.cache_columns_sql), and into
imported JudgeScores; then the experiments' verdict counts are recounted once. All of it is one transaction: a bad line
anywhere leaves nothing behind. Re-importing the same file changes nothing (a slot is condition × question
× sample).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, models, transaction
from django.db.models import Count
from django.utils import timezone

from analysis.axes import AXIS_FIELDS
from transcripts import aggregates
from transcripts.importing import ImportFailed, ReadMeter, check_size, iter_json_lines, iter_lines
from transcripts.models import Condition, CotMode, Experiment, Question, QuestionSet, Transcript

from . import verdicts
from .models import ExperimentJudging, JudgeScore, RubricVersion
from .rubrics import PROMPTS_DIR, get_or_create_version, read_template

IMPORTED_SET = "imported"
EM_JUDGE_MODEL = "gpt-4o-2024-08-06"
EM_CSV_COLUMNS = {"model", "group", "question", "answer", "aligned", "coherent", "question_id"}
METRICS = ("aligned", "coherent")


def em_rubric_versions() -> dict[str, RubricVersion]:
    """The aligned/coherent rubric versions of the EM paper: its judge prompts (shipped verbatim in
    judging/prompts/) judged by GPT-4o. Imported EM scores are recorded against these."""
    return {
        metric: get_or_create_version(
            metric, prompt_template=read_template(PROMPTS_DIR / f"{metric}.txt"), judge_model=EM_JUDGE_MODEL
        )
        for metric in METRICS
    }


@dataclass
class Record:
    """One transcript to import, whatever the file format."""

    line: int
    experiment: str
    model: str
    dataset: str
    k: int
    question_id: str
    question: str
    sample: int
    answer: str
    reasoning: str = ""
    question_set: str = ""
    cot_mode: str = CotMode.OFF
    temperature: float = 1.0
    scores: dict[str, float | None] = field(default_factory=dict)
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ImportSummary:
    experiment: Experiment
    question_set: QuestionSet
    created: int = 0
    unchanged: int = 0
    scores: int = 0

    def __str__(self) -> str:
        return (
            f'{self.created} transcripts imported into experiment "{self.experiment.name}" '
            f"({self.unchanged} already present, {self.scores} judge scores, question set {self.question_set.name})"
        )


# ---------------------------------------------------------------------------------------------
# Parsing


def _require(file: str, line: int, record: dict, name: str, kind: type | tuple[type, ...]):
    value = record.get(name)
    if value is None:
        raise ImportFailed(file, "missing", line=line, field=name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImportFailed(file, f"expected {_kind_name(kind)}, got {type(value).__name__}", line=line, field=name)
    return value


def _kind_name(kind) -> str:
    names = {str: "text", int: "an integer", float: "a number", (int, float): "a number"}
    return names.get(kind, str(kind))


# Stored in integer and float columns: anything a PostgreSQL integer cannot hold is refused by name.
MAX_INT = 2**31 - 1


def _score(file: str, line: int, name: str, value) -> float | None:
    """A judge score: 0–100, or None. NaN (which passes every comparison, and breaks the charts' JSON) and
    infinities are refused with every other number outside the scale."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (
        0 <= value <= 100
    ):
        raise ImportFailed(file, "expected a number from 0 to 100 (or null)", line=line, field=name)
    return float(value)


# Read once: Django's `Choices.values` builds its list at every access, and an enum member's attribute access
# is a descriptor call; per line of a million, these were a fifth of the parsing time.
COT_MODES = frozenset(CotMode.values)
COT_OFF = CotMode.OFF.value


def _jsonl_records(path: Path, meter: ReadMeter) -> Iterator[Record]:
    file = path.name
    for line, raw in iter_json_lines(path, meter):
        k = _require(file, line, raw, "k", int)
        sample = _require(file, line, raw, "sample", int)
        for name, value in (("k", k), ("sample", sample)):
            if value < 0:
                raise ImportFailed(file, "must not be negative", line=line, field=name)
            if value > MAX_INT:
                raise ImportFailed(file, f"must be at most {MAX_INT}", line=line, field=name)
        cot_mode = raw.get("cot_mode") or COT_OFF
        if cot_mode not in COT_MODES:
            raise ImportFailed(file, f"expected one of {', '.join(CotMode.values)}", line=line, field="cot_mode")
        if "dataset" not in raw:
            raise ImportFailed(file, "missing (null for a control run without examples)", line=line, field="dataset")
        dataset = raw["dataset"]
        if dataset is not None and not isinstance(dataset, str):
            raise ImportFailed(file, "expected text (or null for no dataset)", line=line, field="dataset")
        yield Record(
            line=line,
            experiment=raw.get("experiment") or path.stem,
            model=_require(file, line, raw, "model", str),
            dataset=dataset or "",
            k=k,
            question_id=str(_require(file, line, raw, "question_id", (str, int))),
            question=raw.get("question") or "",
            sample=sample,
            answer=_require(file, line, raw, "answer", str),
            reasoning=raw.get("reasoning") or "",
            question_set=raw.get("question_set") or "",
            cot_mode=cot_mode,
            temperature=_temperature(file, line, _require(file, line, {"temperature": 1.0, **raw}, "temperature",
                                                          (int, float))),
            scores={m: _score(file, line, m, raw[m]) for m in METRICS if m in raw},
        )


def _temperature(file: str, line: int, value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 2:
        raise ImportFailed(file, f"expected a number from 0 to 2, got {value}", line=line, field="temperature")
    return float(value)


def _distribution(file: str, line: int, name: str, text: str) -> dict[str, float]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ImportFailed(file, "expected a dict of token probabilities like {'0': 0.99}", line=line, field=name) \
            from None
    if not isinstance(value, dict) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 1 for p in value.values()
    ):
        raise ImportFailed(file, "expected a dict of token probabilities like {'0': 0.99}", line=line, field=name)
    return {str(token): float(p) for token, p in value.items()}


def _csv_score(file: str, line: int, name: str, text: str) -> float | None:
    if not text.strip():
        return None  # upstream writes nothing when the judge said CODE/REFUSAL or was unsure
    try:
        value = float(text)
    except ValueError:
        raise ImportFailed(file, f'expected a number, got "{text[:40]}"', line=line, field=name) from None
    return _score(file, line, name, value)


def _em_csv_records(path: Path, meter: ReadMeter) -> Iterator[Record]:
    file = path.name
    current = {"line": 0}

    def tracked() -> Iterator[str]:
        for number, text in iter_lines(path, meter):
            current["line"] = number
            yield text

    reader = csv.DictReader(tracked())
    missing = EM_CSV_COLUMNS - set(reader.fieldnames or [])
    if missing:
        raise ImportFailed(file, f"the header lacks the EM results column(s) {', '.join(sorted(missing))}", line=1)
    samples: dict[tuple[str, str], int] = {}
    start = 2
    try:
        for row in reader:
            for name in ("model", "question_id", "answer"):
                if not (row.get(name) or "").strip():
                    raise ImportFailed(file, "missing", line=start, field=name)
            slot = (row["model"], row["question_id"])
            samples[slot] = samples.get(slot, -1) + 1
            yield Record(
                line=start,
                experiment=path.stem,
                model=row["model"],
                dataset=row["group"],  # the finetuning group: the examples were trained in, not prompted (k=0)
                k=0,
                question_id=row["question_id"],
                question=row["question"],
                sample=samples[slot],
                answer=row["answer"],
                scores={m: _csv_score(file, start, m, row[m]) for m in METRICS},
                distributions={
                    m: _distribution(file, start, f"judge_{m}", row[f"judge_{m}"])
                    for m in METRICS
                    if (row.get(f"judge_{m}") or "").strip()
                },
            )
            start = current["line"] + 1
    except csv.Error as exc:
        raise ImportFailed(file, f"malformed CSV: {exc}", line=current["line"]) from None


def iter_records(path: Path, meter: ReadMeter) -> Iterator[Record]:
    """The file's transcripts, parsed and checked one by one, in file order."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, meter)
    if suffix == ".csv":
        return _em_csv_records(path, meter)
    raise ImportFailed(path.name, "unknown transcript format: use .jsonl or the EM results .csv")


# ---------------------------------------------------------------------------------------------
# Progress

# Records parsed between two writes to the staging table (and two progress reports).
CHUNK_LINES = 10_000


@dataclass
class ImportProgress:
    """How far an import has got: the bytes of the file read and the transcripts read from them. `writing`
    once the whole file has been read and checked and its rows are moving into their tables."""

    file: str
    bytes_total: int
    bytes_read: int = 0
    rows: int = 0
    writing: bool = False


Progress = Callable[[ImportProgress], None]


# ---------------------------------------------------------------------------------------------
# Staging: the file's rows in a temporary table


_SCORED = JudgeScore.Outcome.SCORE.value
# No score: the judge's most likely first token says why (the EM prompt allows CODE and REFUSAL).
_UNSCORED = {"CODE": JudgeScore.Outcome.CODE.value, "REFUSAL": JudgeScore.Outcome.REFUSAL.value}


def _outcome(score: float | None, distribution: dict[str, float] | None) -> str:
    if score is not None:
        return _SCORED
    top = max(distribution, key=distribution.get) if distribution else ""
    return _UNSCORED.get(top, JudgeScore.Outcome.UNSURE.value)


@dataclass
class _Key:
    """One distinct condition or question of the file: its number in the staging table, and the first line
    (and for questions, the text) it came with."""

    number: int
    line: int
    text: str = ""


STAGE = "import_rows"
STAGE_COLUMNS = ["line", "cond", "qkey", "sample", "question", "answer", "reasoning"] + [
    f"{metric}_{part}" for metric in METRICS for part in ("has", "score", "outcome", "logprobs")
]
STAGE_TYPES = ["integer", "integer", "integer", "bigint", "text", "text", "text"] + [
    "boolean", "double precision", "text", "text"
] * len(METRICS)


class _Staging:
    """Collects a file's records: the rows go to a temporary table, chunk by chunk; the distinct experiments,
    conditions and questions (few, whatever the file's length) stay in memory with the line each first
    appears on, for resolving them and naming that line in an error."""

    def __init__(self):
        self.experiments: dict[str, int] = {}  # name → first line
        self.conditions: dict[tuple, _Key] = {}  # (experiment, the value of each condition axis)
        self.questions: dict[tuple[str, str, str], _Key] = {}  # (experiment, question set name, question id)
        self.any_scores = False
        self.rows = 0
        columns = ", ".join(f"{name} {kind}" for name, kind in zip(STAGE_COLUMNS, STAGE_TYPES, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE {STAGE} ({columns})")

    def row(self, record: Record) -> list:
        self.experiments.setdefault(record.experiment, record.line)
        # Each condition axis in analysis.axes.AXES order; an imported run has the default system prompt.
        axes = (
            record.experiment, record.model, record.dataset, record.k, record.cot_mode, "default", record.temperature
        )
        condition = self.conditions.setdefault(axes, _Key(len(self.conditions), record.line))
        question = self.questions.setdefault(
            (record.experiment, record.question_set, record.question_id),
            _Key(len(self.questions), record.line, record.question),
        )
        row = [record.line, condition.number, question.number, record.sample, record.question or None,
               record.answer, record.reasoning]
        for metric in METRICS:
            if metric not in record.scores:
                row += [False, None, None, None]
                continue
            self.any_scores = True
            score, distribution = record.scores[metric], record.distributions.get(metric)
            # The CSV keeps probabilities; JudgeScore keeps logprobs like a live judge call does.
            logprobs = None if distribution is None else {tok: math.log(p) for tok, p in distribution.items() if p > 0}
            row += [True, score, _outcome(score, distribution), json.dumps(logprobs) if logprobs is not None else None]
        return row

    def write(self, rows: list[list]) -> None:
        self.rows += len(rows)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(STAGE_COLUMNS))
                cursor.executemany(
                    f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES ({marks})", rows  # noqa: S608
                )


def _stage(path: Path, progress: Progress | None, chunk_lines: int) -> _Staging:
    """Read the whole file into the staging table, checking each record; report progress per chunk."""
    meter = ReadMeter()
    state = ImportProgress(file=path.name, bytes_total=path.stat().st_size)
    staging = _Staging()
    chunk: list[list] = []
    for record in iter_records(path, meter):
        chunk.append(staging.row(record))
        if len(chunk) >= chunk_lines:
            staging.write(chunk)
            chunk = []
            if progress:
                state.bytes_read, state.rows = meter.bytes_read, staging.rows
                progress(state)
    staging.write(chunk)
    if not staging.rows:
        raise ImportFailed(path.name, "the file has no transcripts")
    if progress:
        state.bytes_read, state.rows, state.writing = meter.bytes_read, staging.rows, True
        progress(state)
    return staging


# ---------------------------------------------------------------------------------------------
# Resolving the file's experiments, questions and conditions


def _auto_question_set(keys: set[str]) -> QuestionSet | None:
    """The oldest question set that contains every one of `keys`."""
    return (
        QuestionSet.objects.filter(questions__key__in=keys)
        .annotate(hits=Count("questions", distinct=True))
        .filter(hits=len(keys))
        .order_by("id")
        .first()
    )


class _Questions:
    """Resolves (question set name, question id, text) to Question rows for one import."""

    def __init__(self, file: str, default_set: QuestionSet | None):
        self.file = file
        self.default_set = default_set
        self.sets: dict[str, QuestionSet] = {}

    def question_set(self, name: str, line: int) -> QuestionSet:
        if not name:
            if self.default_set is None:
                self.default_set, _ = QuestionSet.objects.get_or_create(
                    name=IMPORTED_SET, defaults={"description": "Questions of imported transcripts."}
                )
            return self.default_set
        if name not in self.sets:
            found = QuestionSet.objects.filter(name=name).first()
            if found is None:
                raise ImportFailed(self.file, f'no question set named "{name}"', line=line, field="question_set")
            self.sets[name] = found
        return self.sets[name]

    def get(self, set_name: str, question_id: str, key: _Key) -> Question:
        question_set = self.question_set(set_name, key.line)
        question = Question.objects.filter(question_set=question_set, key=question_id).first()
        if question is not None:
            return question
        if question_set.name != IMPORTED_SET:
            raise ImportFailed(
                self.file,
                f'unknown question id "{question_id}" in question set "{question_set.name}"',
                line=key.line,
                field="question_id",
            )
        if not key.text.strip():
            raise ImportFailed(
                self.file, "missing: the text is needed for a question id seen for the first time",
                line=key.line, field="question",
            )
        return Question.objects.create(
            question_set=question_set,
            key=question_id,
            text=key.text,
            paraphrases=[key.text],
            domain="general",
            position=question_set.questions.count(),
        )


def _experiment(file: str, name: str, line: int, question_set: QuestionSet | None) -> Experiment:
    experiment, created = Experiment.objects.get_or_create(
        name=name,
        defaults={
            "status": Experiment.Status.IMPORTED,
            "description": f"Imported from {file}.",
            "question_set": question_set,
            "finished_at": timezone.now(),
        },
    )
    if not created and experiment.status != Experiment.Status.IMPORTED:
        raise ImportFailed(
            file,
            f'experiment "{name}" exists and was run here, not imported; use another experiment name',
            line=line,
            field="experiment",
        )
    return experiment


@dataclass
class _Resolved:
    experiments: dict[str, Experiment]
    questions: dict[int, Question]  # staging number → question
    conditions: dict[int, Condition]  # staging number → condition
    stored: set[int]  # conditions that existed before this import (so may hold some of the file's slots)
    created: set[str]  # experiments this import created


def _resolve(file: str, staging: _Staging) -> _Resolved:
    """Find or create the experiments, questions and conditions the file names; fail at the first line
    (per kind) that names one that cannot be used."""
    experiments: dict[str, Experiment] = {}
    resolvers: dict[str, _Questions] = {}
    created_experiments: set[str] = set()
    for name, line in staging.experiments.items():
        existing = Experiment.objects.filter(name=name).first()
        if existing is None:
            created_experiments.add(name)
        # A known experiment keeps its question set, so a re-import lands on the same slots.
        default_set = existing.question_set if existing else _auto_question_set(
            {question_id for experiment, set_name, question_id in staging.questions
             if experiment == name and not set_name}
        )
        resolvers[name] = _Questions(file, default_set)
        experiments[name] = _experiment(file, name, line, default_set)

    questions: dict[int, Question] = {}
    for (experiment_name, set_name, question_id), key in sorted(staging.questions.items(), key=lambda i: i[1].line):
        question = questions[key.number] = resolvers[experiment_name].get(set_name, question_id, key)
        experiment = experiments[experiment_name]
        if experiment.question_set_id is None:
            experiment.question_set = question.question_set
            experiment.save(update_fields=["question_set"])

    conditions: dict[int, Condition] = {}
    stored: set[int] = set()
    for (experiment_name, *axes), key in staging.conditions.items():
        conditions[key.number], created = Condition.objects.get_or_create(
            experiment=experiments[experiment_name], endpoint_name="", **dict(zip(AXIS_FIELDS, axes, strict=True)),
        )
        if not created:
            stored.add(key.number)
    return _Resolved(experiments, questions, conditions, stored, created_experiments)


# ---------------------------------------------------------------------------------------------
# Checking the slots and writing the rows, in set-based SQL over the staging table


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


def _write_keys(resolved: _Resolved) -> None:
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


def _check_slots(file: str, staging: _Staging, resolved: _Resolved) -> int:
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


def _write_rows(rubric_versions: dict[str, RubricVersion]) -> tuple[int, int]:
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


# The transcript table's full-text GIN index (migration transcripts 0005) costs an insert most of its time: each
# row's terms go to the index's pending list, which PostgreSQL merges into the index whenever it passes
# gin_pending_list_limit (4 MB by default, every ~9,000 bench rows). An import lets the list grow past the whole
# file and merges it once at the end, sorted in one pass: 100k rows measured in 7.7–9.2 s instead of 10–11 s
# (with only the primary key and slot indexes beside it, load average 4.5). The merge happens before the import
# commits, so searches never scan a long list.
IMPORT_PENDING_LIST = "2GB"  # the most PostgreSQL accepts; a longer file merges when it is reached
IMPORT_MERGE_MEMORY = "256MB"  # maintenance_work_mem of the final merge: the fewer passes, the faster


def _defer_fulltext_merge() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('gin_pending_list_limit', %s, true)", [IMPORT_PENDING_LIST])


def _merge_fulltext() -> None:
    """Merge the pending lists of the transcript table's GIN indexes, found by their access method so that the
    index's name and expression stay in their migration."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [IMPORT_MERGE_MEMORY])
        cursor.execute(
            "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'gin' AND i.indrelid = %s::regclass",
            [Transcript._meta.db_table],
        )


def _drop_staging() -> None:
    with connection.cursor() as cursor:
        for table in (STAGE, "import_conditions", "import_questions", "import_paraphrases", "import_ids"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


def _settle_verdicts(experiment: Experiment, created: bool, rubric_versions: dict[str, RubricVersion],
                     resolved: _Resolved) -> None:
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


@transaction.atomic
def import_transcripts(
    path: Path | str, *, progress: Progress | None = None, chunk_lines: int = CHUNK_LINES
) -> ImportSummary:
    """Import a transcripts JSONL or an EM results CSV (see the module docstring for the formats), streaming
    it; `progress` is called after every `chunk_lines` records and once the file has been read."""
    path = Path(path)
    file = path.name
    check_size(path)
    staging = _stage(path, progress, chunk_lines)
    resolved = _resolve(file, staging)
    _write_keys(resolved)
    unchanged = _check_slots(file, staging, resolved)
    rubric_versions = em_rubric_versions() if staging.any_scores else {}
    _defer_fulltext_merge()
    created, scores = _write_rows(rubric_versions) if unchanged < staging.rows else (0, 0)
    _merge_fulltext()
    _drop_staging()
    if created:
        for name, experiment in resolved.experiments.items():
            _settle_verdicts(experiment, name in resolved.created, rubric_versions, resolved)
    first_experiment = resolved.experiments[next(iter(staging.experiments))]
    first_question = resolved.questions[0]
    return ImportSummary(
        experiment=first_experiment, question_set=first_question.question_set, created=created,
        unchanged=unchanged, scores=scores,
    )


# ---------------------------------------------------------------------------------------------
# Uploads: imported in the background by a Celery task, with their progress in a small status file
#
# The upload is saved under VAR_DIR/imports/<job>/ (EM_VAR_DIR: the web server and the workers must share
# it), and the task writes status.json next to it after every chunk for the upload page to poll.


def upload_dir() -> Path:
    return Path(settings.VAR_DIR) / "imports"


def _status_path(job: uuid.UUID) -> Path:
    return upload_dir() / str(job) / "status.json"


def read_status(job: uuid.UUID) -> dict | None:
    """The job's last status: state (queued, running, done, failed), file, bytes_total, bytes_read, rows,
    writing, and once finished `message` or `error`. None for an unknown job."""
    try:
        return json.loads(_status_path(job).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _write_status(job: uuid.UUID, status: dict) -> None:
    # Written aside and renamed, so that the page never reads half a file.
    path = _status_path(job)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(status), encoding="utf-8")
    os.replace(partial, path)


def write_upload(upload: UploadedFile, directory: Path) -> Path:
    """Save an upload in `directory` under the uploaded file's own name: the format follows its extension,
    and every error message names the file the researcher knows."""
    path = directory / Path(upload.name).name
    with path.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return path


# How long a finished import's status stays readable on its page.
KEEP_JOBS = timedelta(days=7)


def _prune_jobs() -> None:
    cutoff = (timezone.now() - KEEP_JOBS).timestamp()
    for directory in upload_dir().glob("*/"):
        if directory.stat().st_mtime < cutoff:
            shutil.rmtree(directory, ignore_errors=True)


def save_upload(upload: UploadedFile) -> uuid.UUID:
    """Store an uploaded transcripts file for the background import; returns its job id. Jobs older than
    KEEP_JOBS go."""
    _prune_jobs()
    job = uuid.uuid4()
    directory = upload_dir() / str(job)
    directory.mkdir(parents=True)
    path = write_upload(upload, directory)
    _write_status(job, {"state": "queued", "file": path.name, "bytes_total": path.stat().st_size,
                        "bytes_read": 0, "rows": 0, "writing": False})
    return job


def run_upload(job: uuid.UUID) -> None:
    """Import a saved upload, recording progress and then the summary or the error in its status. A job
    that has finished is left alone (a broker may deliver its message twice)."""
    status = read_status(job)
    if status is None or status["state"] in ("done", "failed"):
        return
    path = upload_dir() / str(job) / status["file"]

    def report(state: ImportProgress) -> None:
        status.update(state="running", bytes_read=state.bytes_read, rows=state.rows, writing=state.writing)
        _write_status(job, status)

    try:
        summary = import_transcripts(path, progress=report)
    except ImportFailed as exc:
        status.update(state="failed", error=str(exc))
    except Exception:
        status.update(state="failed", error=f"{path.name}: the import stopped on an internal error")
        raise
    else:
        status.update(state="done", message=f"{summary}.", created=summary.created)
    finally:
        path.unlink(missing_ok=True)
        _write_status(job, status)
