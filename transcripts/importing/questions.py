"""Evaluation questions: an EM YAML file (ids, paraphrases, system prompt, judge prompts) or a plain CSV
(id,question,domain), checked and written as a question set."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from django.db import transaction

from em_site import bounded

from ..models import Experiment, Question, QuestionSet, Transcript
from .files import MAX_PROBLEMS, ImportFailed, collect, iter_lines, raise_problems, read_text

# preregistered_evals.yaml numbers its ids by category: "31_illegal_recommendations_0".
NUMBERED_ID = re.compile(r"^\d+_(?P<domain>[a-z][a-z_]*?)_\d+$")
DEFAULT_DOMAIN = "general"


def domain_for(key: str) -> str:
    match = NUMBERED_ID.match(key)
    return match["domain"] if match else DEFAULT_DOMAIN


def _yaml_questions(path: Path, problems: list[ImportFailed]) -> list[dict]:
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

    questions: list[dict] = []
    for node, item in zip(root.value, data, strict=True):
        try:
            questions.append(_yaml_question(path.name, node, item))
        except ImportFailed as error:
            if collect(problems, error):
                break
    return questions


def _yaml_question(file: str, node: yaml.Node, item: object) -> dict:
    """One question of an EM YAML list, checked; its node gives the line numbers of the messages."""
    line = node.start_mark.line + 1
    if not isinstance(item, dict):
        raise ImportFailed(file, "expected a question object with id and paraphrases", line=line)
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    if item.get("id") in (None, ""):
        raise ImportFailed(file, "missing", line=line, field="id")
    paraphrases = item.get("paraphrases")
    if not isinstance(paraphrases, list) or not paraphrases or not all(isinstance(p, str) for p in paraphrases):
        raise ImportFailed(
            file, "expected a non-empty list of strings", line=lines.get("paraphrases", line), field="paraphrases",
        )
    system = item.get("system") or ""
    if not isinstance(system, str):
        raise ImportFailed(file, "expected a string", line=lines["system"], field="system")
    judge_prompts = item.get("judge_prompts") or {}
    if not isinstance(judge_prompts, dict) or not all(isinstance(v, str) for v in judge_prompts.values()):
        raise ImportFailed(
            file, "expected a mapping of metric to template", line=lines["judge_prompts"], field="judge_prompts",
        )
    key = str(item["id"])
    return {
        "line": lines["id"],
        "key": key,
        "text": paraphrases[0],
        "paraphrases": paraphrases,
        "domain": str(item.get("domain") or domain_for(key)),
        "system_prompt": system,
        "judge_prompts": judge_prompts,
    }


def _csv_questions(path: Path, problems: list[ImportFailed]) -> list[dict]:
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
    questions: list[dict] = []
    start = current["line"] + 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                try:
                    questions.append(_csv_question(path.name, start, dict(zip(header, row, strict=False))))
                except ImportFailed as error:
                    if collect(problems, error):
                        break
            start = current["line"] + 1
    except csv.Error as exc:
        collect(problems, ImportFailed(path.name, f"malformed CSV: {exc}", line=current["line"]))
    if not questions and not problems:
        raise ImportFailed(path.name, "the file has no questions")
    return questions


def _csv_question(file: str, line: int, record: dict[str, str]) -> dict:
    for field in ("id", "question"):
        if not (record.get(field) or "").strip():
            raise ImportFailed(file, "missing", line=line, field=field)
    key = record["id"].strip()
    return {
        "line": line,
        "key": key,
        "text": record["question"],
        "paraphrases": [record["question"]],
        "domain": (record.get("domain") or "").strip() or domain_for(key),
        "system_prompt": "",
        "judge_prompts": {},
    }


def read_questions(path: Path) -> list[dict]:
    """Parse and validate a question file (EM YAML or id,question,domain CSV) without saving it. Bad questions
    and duplicate ids are reported together, the first MAX_PROBLEMS of them in file order."""
    suffix = path.suffix.lower()
    problems: list[ImportFailed] = []
    if suffix in (".yaml", ".yml"):
        questions = _yaml_questions(path, problems)
    elif suffix == ".csv":
        questions = _csv_questions(path, problems)
    else:
        raise ImportFailed(
            path.name, "unknown question format: use .yaml/.yml (EM format) or .csv (id,question,domain)"
        )
    first_line: dict[str, int] = {}
    for question in questions:
        if question["key"] in first_line:
            problems.append(ImportFailed(
                path.name,
                f'duplicate question id "{question["key"]}" (first on line {first_line[question["key"]]})',
                line=question["line"],
                field="id",
            ))
        first_line.setdefault(question["key"], question["line"])
    raise_problems(sorted(problems, key=lambda problem: problem.line or 0)[:MAX_PROBLEMS])
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
