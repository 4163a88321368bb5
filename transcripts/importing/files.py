"""What every import reads files with: the one error a refused import raises (ImportFailed, naming the file, the
line and the field; ImportProblems for several bad lines at once), and safe reading. Files are checked by size
before they are opened; JSONL and CSV are streamed line by line (`iter_lines`, which also counts the bytes read for
progress bars), each line held to a size limit; YAML is read whole, so its limit is far smaller (em_site.bounded:
every parse is bounded in size and depth before anything is built).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from em_site import bounded


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

    def report(self) -> dict:
        """What a page shows of the refusal, as JSON-ready data: the file, the whole message, each bad place
        (line, sample, field, message) and whether reading stopped at MAX_PROBLEMS of them."""
        places = getattr(self, "problems", [self])
        return {
            "file": self.file, "message": str(self), "capped": len(places) >= MAX_PROBLEMS,
            "problems": [{"line": p.line, "sample": p.sample, "field": p.field, "message": p.message} for p in places],
        }


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


def collect(problems: list[ImportFailed] | None, error: ImportFailed) -> bool:
    """Note one bad place of a file being read on: added to `problems`, or raised at once without a list.
    True once MAX_PROBLEMS are noted, when the reader should stop."""
    if problems is None:
        raise error
    problems.append(error)
    return len(problems) >= MAX_PROBLEMS


def raise_problems(problems: list[ImportFailed]) -> None:
    """Refuse the import if a bad place was noted: one ImportProblems naming them all (the first is its own)."""
    if problems:
        raise ImportProblems(problems)


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
        elif collect(problems, ImportFailed(path.name, problem, line=number)):
            return
    if not seen_any and not problems:
        raise ImportFailed(path.name, "the file has no records")
