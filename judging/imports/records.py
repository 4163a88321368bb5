"""Parsing transcript files into Records, one line at a time: the JSONL format and the Emergent Misalignment
results CSV (judging.imports.importing describes both). Every check names the file, line and field."""

from __future__ import annotations

import ast
import csv
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transcripts.importing import ImportFailed, ReadMeter, collect, iter_json_lines, iter_lines
from transcripts.models import CotMode

EM_CSV_COLUMNS = {"model", "group", "question", "answer", "aligned", "coherent", "question_id"}
METRICS = ("aligned", "coherent")


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
    place: str = ""  # where an error names it, if not by its line: an Inspect sample (id, epoch)
    question_set: str = ""
    cot_mode: str = CotMode.OFF
    temperature: float = 1.0
    scores: dict[str, float | None] = field(default_factory=dict)
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)


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


def score_value(file: str, line: int | None, name: str, value) -> float | None:
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


def _jsonl_records(path: Path, meter: ReadMeter, problems: list[ImportFailed]) -> Iterator[Record]:
    for line, raw in iter_json_lines(path, meter, problems):
        try:
            record = _jsonl_record(path, line, raw)
        except ImportFailed as error:
            if collect(problems, error):
                return
            continue
        yield record


def _jsonl_record(path: Path, line: int, raw: dict) -> Record:
    file = path.name
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
    return Record(
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
        temperature=temperature_value(file, line, _require(file, line, {"temperature": 1.0, **raw}, "temperature",
                                                      (int, float))),
        scores={m: score_value(file, line, m, raw[m]) for m in METRICS if m in raw},
    )


def temperature_value(file: str, line: int | None, value: float) -> float:
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
    return score_value(file, line, name, value)


def _em_csv_records(path: Path, meter: ReadMeter, problems: list[ImportFailed]) -> Iterator[Record]:
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
            try:
                record = _em_csv_record(path, start, row, samples)
            except ImportFailed as error:
                if collect(problems, error):
                    return
            else:
                yield record
            start = current["line"] + 1
    except csv.Error as exc:
        collect(problems, ImportFailed(file, f"malformed CSV: {exc}", line=current["line"]))


def _em_csv_record(path: Path, line: int, row: dict[str, str], samples: dict[tuple[str, str], int]) -> Record:
    """One row of the EM results CSV; `samples` numbers the rows of each (model, question) in file order."""
    file = path.name
    for name in ("model", "question_id", "answer"):
        if not (row.get(name) or "").strip():
            raise ImportFailed(file, "missing", line=line, field=name)
    slot = (row["model"], row["question_id"])
    samples[slot] = samples.get(slot, -1) + 1
    return Record(
        line=line,
        experiment=path.stem,
        model=row["model"],
        dataset=row["group"],  # the finetuning group: the examples were trained in, not prompted (k=0)
        k=0,
        question_id=row["question_id"],
        question=row["question"],
        sample=samples[slot],
        answer=row["answer"],
        scores={m: _csv_score(file, line, m, row[m]) for m in METRICS},
        distributions={
            m: _distribution(file, line, f"judge_{m}", row[f"judge_{m}"])
            for m in METRICS
            if (row.get(f"judge_{m}") or "").strip()
        },
    )


def iter_records(path: Path, meter: ReadMeter, unmapped: Counter, problems: list[ImportFailed]) -> Iterator[Record]:
    """The file's transcripts, parsed and checked one by one, in file order. A bad line of a JSONL or CSV file
    goes to `problems` and reading goes on to the next (up to MAX_PROBLEMS), so that one refusal names them;
    an Inspect log raises at its first bad sample. What a file carries that the mapping leaves out is counted
    by name in `unmapped` (Inspect logs)."""
    from .inspect_logs import INSPECT_SUFFIXES, inspect_records  # inspect_ai takes a second to import

    suffix = path.suffix.lower()
    if suffix in INSPECT_SUFFIXES:
        return inspect_records(path, meter, unmapped)
    if suffix == ".jsonl":
        return _jsonl_records(path, meter, problems)
    if suffix == ".csv":
        return _em_csv_records(path, meter, problems)
    raise ImportFailed(
        path.name, "unknown transcript format: use .jsonl, the EM results .csv or an Inspect log (.eval, .json)"
    )
