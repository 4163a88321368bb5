"""In-context datasets: a chat JSONL file (one example a line, `{"messages": [...]}`) checked line by line and
written as a new version of a dataset, or found again when its content is already there."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from django.db import transaction

from ..models import Dataset, Example
from .files import ImportFailed, collect, iter_json_lines, raise_problems

BATCH = 1000


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
            if collect(problems, ImportFailed(path.name, message, line=number, field=field)):
                break
        elif not problems:  # after a bad line nothing will be imported: read on only to report
            yield record["messages"]
    raise_problems(problems)


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
