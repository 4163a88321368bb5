"""Staging: a file's records, checked, in a temporary table (COPY on PostgreSQL), with only its few distinct
experiments, conditions and questions kept in memory; and how far that has got (ImportProgress)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

from transcripts.importing import ImportFailed, ReadMeter, raise_problems

from ..verdicts import classify_outcome
from .records import METRICS, Record, iter_records

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


@dataclass
class Key:
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


class Staging:
    """Collects a file's records: the rows go to a temporary table, chunk by chunk; the distinct experiments,
    conditions and questions (few, whatever the file's length) stay in memory with the line each first
    appears on, for resolving them and naming that line in an error."""

    def __init__(self):
        self.experiments: dict[str, int] = {}  # name → first line
        self.conditions: dict[tuple, Key] = {}  # (experiment, the value of each condition axis)
        self.questions: dict[tuple[str, str, str], Key] = {}  # (experiment, question set name, question id)
        self.any_scores = False
        self.rows = 0
        self.unmapped: Counter = Counter()  # what the file carries that the mapping left out, by name
        self.places: dict[int, str] = {}  # line → how an error names that record, where not by its line
        columns = ", ".join(f"{name} {kind}" for name, kind in zip(STAGE_COLUMNS, STAGE_TYPES, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE {STAGE} ({columns})")

    def name_place(self, error: ImportFailed) -> ImportFailed:
        """The error naming its record's place (an Inspect sample) rather than its line, where it has one."""
        if error.line in self.places:
            error.sample = self.places[error.line]
        return error

    def row(self, record: Record) -> list:
        self.experiments.setdefault(record.experiment, record.line)
        if record.place:
            self.places[record.line] = record.place
        # Each condition axis in analysis.axes.AXES order; an imported run has the default system prompt.
        axes = (
            record.experiment, record.model, record.dataset, record.k, record.cot_mode, "default", record.temperature
        )
        condition = self.conditions.setdefault(axes, Key(len(self.conditions), record.line))
        question = self.questions.setdefault(
            (record.experiment, record.question_set, record.question_id),
            Key(len(self.questions), record.line, record.question),
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
            # The outcome by the one rule a live judge's answer goes through (only the aligned prompt allows
            # CODE and REFUSAL).
            outcome = classify_outcome(logprobs or {}, score, escapes=metric == "aligned")
            row += [True, score, outcome, json.dumps(logprobs) if logprobs is not None else None]
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


def stage(path: Path, progress: Progress | None, chunk_lines: int) -> Staging:
    """Read the whole file into the staging table, checking each record; report progress per chunk."""
    meter = ReadMeter()
    state = ImportProgress(file=path.name, bytes_total=path.stat().st_size)
    staging = Staging()
    chunk: list[list] = []
    problems: list[ImportFailed] = []
    for count, record in enumerate(iter_records(path, meter, staging.unmapped, problems), 1):
        if not problems:  # after a bad line nothing will be imported: the rest is read only to name its bad lines
            chunk.append(staging.row(record))
        if count % chunk_lines == 0:
            staging.write(chunk)
            chunk = []
            if progress:
                state.bytes_read, state.rows = meter.bytes_read, staging.rows
                progress(state)
    raise_problems(problems)
    staging.write(chunk)
    if not staging.rows:
        raise ImportFailed(path.name, "the file has no transcripts")
    if progress:
        state.bytes_read, state.rows, state.writing = meter.bytes_read, staging.rows, True
        progress(state)
    return staging
