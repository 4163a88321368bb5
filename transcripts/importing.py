"""Import in-context datasets (chat JSONL) and evaluation questions (EM YAML, plain CSV).

Every import is one transaction and idempotent: the same file again changes nothing. Bad input raises
one `ImportFailed` that names the file, the line and the field, and nothing is written. Files are
checked by size before they are opened and JSONL and CSV are streamed line by line (`iter_lines`, which
also counts the bytes read for progress bars), each line held to a size limit; YAML is read whole, so its
limit is far smaller (em_site.bounded: every parse is bounded in size and depth before anything is built).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings
from django.db import transaction

from em_site import bounded

from .models import Dataset, Example, Experiment, Question, QuestionSet, Transcript

BATCH = 1000


class ImportFailed(Exception):
    """One clear reason an import was refused, pointing at the place in the file."""

    def __init__(self, file: str, message: str, *, line: int | None = None, field: str | None = None,
                 sample: str | None = None):
        self.file = file
        self.line = line
        self.sample = sample  # names the place instead of a line, where a file has samples rather than lines
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.file]
        if self.sample is not None:
            where.append(self.sample)
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f'field "{self.field}"')
        return f"{', '.join(where)}: {self.message}"


MAX_PROBLEMS = 20  # bad places one refused import reports, so that one round of fixes covers most of them


class ImportProblems(ImportFailed):
    """Several bad places in one file (up to MAX_PROBLEMS, in file order), reported together; the first is
    the error's own file, line and field."""

    def __init__(self, problems: list[ImportFailed]):
        self.problems = problems
        first = problems[0]
        super().__init__(first.file, first.message, line=first.line, field=first.field)

    def __str__(self) -> str:
        first = super().__str__()
        if len(self.problems) == 1:
            return first
        lines = ", ".join(str(p.line) for p in self.problems[1:] if p.line is not None)
        more = "at least " if len(self.problems) >= MAX_PROBLEMS else ""
        return f"{first} (and {more}{len(self.problems) - 1} more bad lines: {lines})"


# ---------------------------------------------------------------------------------------------
# Reading files safely


def refuse_oversized(file: str, size: int) -> None:
    """The one size limit of every upload and import (settings.IMPORT_MAX_BYTES)."""
    limit = settings.IMPORT_MAX_BYTES
    if size > limit:
        raise ImportFailed(
            file, f"the file is {size / 2**20:.1f} MB; the import limit is {limit / 2**20:.1f} MB (IMPORT_MAX_BYTES)"
        )


def check_size(path: Path) -> None:
    """Refuse empty and oversized files before reading a byte of them."""
    size = path.stat().st_size
    refuse_oversized(path.name, size)
    if size == 0:
        raise ImportFailed(path.name, "the file is empty")


def _decode_error(path: Path, line: int, exc: UnicodeDecodeError) -> ImportFailed:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return ImportFailed(
        path.name,
        f"not valid UTF-8 (byte 0x{byte} at column {exc.start + 1}); save the file as UTF-8",
        line=line,
    )


@dataclass
class ReadMeter:
    """How far a streamed read has got, for progress reports: bytes of the file consumed so far."""

    bytes_read: int = 0


def iter_lines(path: Path, meter: ReadMeter | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) for each line, streamed; a leading UTF-8 BOM is dropped. A line
    longer than em_site.bounded.LINE_MAX_BYTES is refused. `meter`, if given, counts the bytes handed out."""
    check_size(path)
    meter = meter or ReadMeter()
    with path.open("rb") as handle:
        number = 0
        # readline with a limit, so that one endless line is refused at the limit rather than read whole.
        while raw := handle.readline(bounded.LINE_MAX_BYTES + 1):
            number += 1
            if len(raw) > bounded.LINE_MAX_BYTES:
                limit = bounded.in_bytes(bounded.LINE_MAX_BYTES)
                raise ImportFailed(path.name, f"the line is longer than the limit of {limit}", line=number)
            meter.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _decode_error(path, number, exc) from None
            yield number, text.removeprefix("\ufeff") if number == 1 else text


def read_text(path: Path) -> str:
    """The whole file as text, for formats that cannot be streamed (YAML): held to the limit of a document
    read whole (em_site.bounded.DOCUMENT_MAX_BYTES), far below the import limit."""
    check_size(path)
    try:
        bounded.check_size(path.stat().st_size)
    except bounded.Refused as exc:
        raise ImportFailed(path.name, exc.message) from None
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _decode_error(path, raw.count(b"\n", 0, exc.start) + 1, exc) from None


def iter_json_lines(path: Path, meter: ReadMeter | None = None,
                    problems: list[ImportFailed] | None = None) -> Iterator[tuple[int, object]]:
    """(line number, parsed object) for each non-blank line of a JSONL file. A bad line raises ImportFailed,
    or, given a `problems` list, is added to it and skipped (reading stops at MAX_PROBLEMS of them)."""
    seen_any = False
    for number, text in iter_lines(path, meter):
        if not text.strip():
            continue
        try:
            # Without its line ending, so that the column of an error at the end of the line makes sense.
            record = bounded.load_json(text.rstrip("\r\n"), limit=bounded.LINE_MAX_BYTES)
            problem = None if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"
        except bounded.Refused as exc:
            problem = exc.message
        except json.JSONDecodeError as exc:
            problem = f"malformed JSON: {exc.msg} (column {exc.colno})"
        if problem is None:
            seen_any = True
            yield number, record
        elif problems is None:
            raise ImportFailed(path.name, problem, line=number)
        else:
            problems.append(ImportFailed(path.name, problem, line=number))
            if len(problems) >= MAX_PROBLEMS:
                return
    if not seen_any and not problems:
        raise ImportFailed(path.name, "the file has no records")


# ---------------------------------------------------------------------------------------------
# In-context datasets


def validate_messages(messages: object) -> str | None:
    """None if `messages` is a valid in-context example, else 'field: problem'.

    An optional leading system turn, then user/assistant strictly alternating, ending with assistant.
    """
    if not isinstance(messages, list) or not messages:
        return "messages: expected a non-empty list of chat turns"
    expected = "user"
    for index, turn in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(turn, dict):
            return f"{where}: expected an object with role and content"
        role = turn.get("role")
        if role is None:
            return f"{where}.role: missing"
        if not isinstance(turn.get("content"), str):
            return f"{where}.content: missing or not a string"
        if role == "system" and index == 0:
            continue
        if role != expected:
            if index == 0:
                return f'{where}.role: expected "user" or "system" first, got "{role}"'
            previous = messages[index - 1].get("role")
            return f'{where}.role: expected "{expected}" after "{previous}", got "{role}"'
        expected = "assistant" if role == "user" else "user"
    if expected != "user":
        return f"messages[{len(messages)}]: the example must end with an assistant turn"
    return None


def _dataset_examples(path: Path) -> Iterator[list[dict]]:
    """The file's examples; ImportProblems naming up to MAX_PROBLEMS bad lines if any line is bad (the file
    is read on past the first, so one round of fixes covers them)."""
    problems: list[ImportFailed] = []
    for number, record in iter_json_lines(path, problems=problems):
        problem = validate_messages(record.get("messages")) if "messages" in record else "messages: missing"
        if problem:
            field, message = problem.split(": ", 1)
            problems.append(ImportFailed(path.name, message, line=number, field=field))
            if len(problems) >= MAX_PROBLEMS:
                break
        elif not problems:  # after a bad line nothing will be imported: read on only to report
            yield record["messages"]
    if problems:
        raise ImportProblems(problems)


def _canonical(messages: list[dict]) -> bytes:
    # Only role and content define an example; other keys (e.g. "weight") don't make a new version.
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    return json.dumps(turns, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@transaction.atomic
def import_dataset(path: Path | str, *, name: str, description: str = "", synthetic: bool = False) -> tuple[
    Dataset, bool
]:
    """Import a chat JSONL file as dataset `name`. Same content again returns the existing version
    (created=False); different content under the same name becomes the next version."""
    path = Path(path)
    # First pass validates and hashes without touching the database, so a re-import costs no writes.
    digest, count = hashlib.sha256(), 0
    for messages in _dataset_examples(path):
        digest.update(_canonical(messages))
        count += 1
    existing = Dataset.objects.filter(name=name, content_hash=digest.hexdigest()).first()
    if existing:
        return existing, False
    latest = Dataset.objects.select_for_update().filter(name=name).order_by("-version").first()
    dataset = Dataset.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        description=description,
        content_hash=digest.hexdigest(),
        source_filename=path.name,
        synthetic=synthetic,
        n_examples=count,
    )
    batch: list[Example] = []
    for position, messages in enumerate(_dataset_examples(path)):
        turns = [{"role": m["role"], "content": m["content"]} for m in messages]
        batch.append(Example(dataset=dataset, position=position, messages=turns))
        if len(batch) >= BATCH:
            Example.objects.bulk_create(batch)
            batch = []
    Example.objects.bulk_create(batch)
    return dataset, True


# ---------------------------------------------------------------------------------------------
# Evaluation questions

# preregistered_evals.yaml numbers its ids by category: "31_illegal_recommendations_0".
NUMBERED_ID = re.compile(r"^\d+_(?P<domain>[a-z][a-z_]*?)_\d+$")
DEFAULT_DOMAIN = "general"


def domain_for(key: str) -> str:
    match = NUMBERED_ID.match(key)
    return match["domain"] if match else DEFAULT_DOMAIN


def _yaml_questions(path: Path) -> list[dict]:
    try:
        # The nodes keep each question's line number for the messages below.
        root, data = bounded.load_yaml_nodes(read_text(path))
    except bounded.Refused as exc:
        raise ImportFailed(path.name, exc.message, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ImportFailed(
            path.name, f"malformed YAML: {problem}", line=mark.line + 1 if mark else None
        ) from None
    if data is None:
        raise ImportFailed(path.name, "the file has no questions")
    if not isinstance(data, list):
        raise ImportFailed(path.name, "expected a YAML list of questions (- id: …)", line=root.start_mark.line + 1)

    questions = []
    for node, item in zip(root.value, data, strict=True):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            raise ImportFailed(path.name, "expected a question object with id and paraphrases", line=line)
        lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
        if item.get("id") in (None, ""):
            raise ImportFailed(path.name, "missing", line=line, field="id")
        paraphrases = item.get("paraphrases")
        if not isinstance(paraphrases, list) or not paraphrases or not all(isinstance(p, str) for p in paraphrases):
            raise ImportFailed(
                path.name, "expected a non-empty list of strings", line=lines.get("paraphrases", line),
                field="paraphrases",
            )
        system = item.get("system") or ""
        if not isinstance(system, str):
            raise ImportFailed(path.name, "expected a string", line=lines["system"], field="system")
        judge_prompts = item.get("judge_prompts") or {}
        if not isinstance(judge_prompts, dict) or not all(isinstance(v, str) for v in judge_prompts.values()):
            raise ImportFailed(
                path.name, "expected a mapping of metric to template", line=lines["judge_prompts"],
                field="judge_prompts",
            )
        key = str(item["id"])
        questions.append({
            "line": lines["id"],
            "key": key,
            "text": paraphrases[0],
            "paraphrases": paraphrases,
            "domain": str(item.get("domain") or domain_for(key)),
            "system_prompt": system,
            "judge_prompts": judge_prompts,
        })
    return questions


def _csv_questions(path: Path) -> list[dict]:
    lines = iter_lines(path)
    current = {"line": 0}

    def tracked() -> Iterator[str]:
        for number, text in lines:
            current["line"] = number
            yield text

    reader = csv.reader(tracked())
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFailed(path.name, "the file has no questions") from None
    if "id" not in header or "question" not in header:
        raise ImportFailed(path.name, "the first row must be the header id,question,domain", line=1)
    questions = []
    start = current["line"] + 1
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                start = current["line"] + 1
                continue
            record = dict(zip(header, row, strict=False))
            for field in ("id", "question"):
                if not (record.get(field) or "").strip():
                    raise ImportFailed(path.name, "missing", line=start, field=field)
            key = record["id"].strip()
            questions.append({
                "line": start,
                "key": key,
                "text": record["question"],
                "paraphrases": [record["question"]],
                "domain": (record.get("domain") or "").strip() or domain_for(key),
                "system_prompt": "",
                "judge_prompts": {},
            })
            start = current["line"] + 1
    except csv.Error as exc:
        raise ImportFailed(path.name, f"malformed CSV: {exc}", line=current["line"]) from None
    if not questions:
        raise ImportFailed(path.name, "the file has no questions")
    return questions


def read_questions(path: Path) -> list[dict]:
    """Parse and validate a question file (EM YAML or id,question,domain CSV) without saving it."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        questions = _yaml_questions(path)
    elif suffix == ".csv":
        questions = _csv_questions(path)
    else:
        raise ImportFailed(
            path.name, "unknown question format: use .yaml/.yml (EM format) or .csv (id,question,domain)"
        )
    first_line: dict[str, int] = {}
    for question in questions:
        if question["key"] in first_line:
            raise ImportFailed(
                path.name,
                f'duplicate question id "{question["key"]}" (first on line {first_line[question["key"]]})',
                line=question["line"],
                field="id",
            )
        first_line[question["key"]] = question["line"]
    return questions


@transaction.atomic
def import_questions(path: Path | str, *, name: str) -> tuple[QuestionSet, bool]:
    """Import a question file as question set `name`; returns (set, changed).

    Same content again changes nothing. Different content replaces the questions only while no
    experiment uses the set: results must keep pointing at the questions that were asked.
    """
    path = Path(path)
    questions = read_questions(path)
    digest = hashlib.sha256(
        json.dumps([{k: v for k, v in q.items() if k != "line"} for q in questions], sort_keys=True).encode()
    ).hexdigest()
    question_set = QuestionSet.objects.select_for_update().filter(name=name).first()
    if question_set and question_set.content_hash == digest:
        return question_set, False
    if question_set:
        in_use = (
            Experiment.objects.filter(question_set=question_set).exists()
            or Transcript.objects.filter(question__question_set=question_set).exists()
        )
        if in_use:
            raise ImportFailed(
                path.name,
                f'question set "{name}" is used by an experiment and its content differs; import it under a new name',
            )
        question_set.questions.all().delete()
        question_set.content_hash = digest
        question_set.source_filename = path.name
        question_set.save(update_fields=["content_hash", "source_filename"])
    else:
        question_set = QuestionSet.objects.create(name=name, content_hash=digest, source_filename=path.name)
    Question.objects.bulk_create(
        Question(question_set=question_set, position=position, **{k: v for k, v in q.items() if k != "line"})
        for position, q in enumerate(questions)
    )
    return question_set, True
