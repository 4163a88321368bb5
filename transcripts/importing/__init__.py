"""Import in-context datasets (chat JSONL) and evaluation questions (EM YAML, plain CSV).

Every import is one transaction and idempotent: the same file again changes nothing. Bad input raises
one `ImportFailed` that names the file, the line and the field (`ImportProblems`: the first 20 bad lines
at once), and nothing is written.

Its modules, one concern each: `files` (the error a refused import raises, and reading any imported file within
its limits: size, UTF-8, lines, JSON lines, a YAML document), `datasets` (chat JSONL checked and written as a
dataset version), `questions` (EM YAML or CSV checked and written as a question set). Transcripts with their judge
scores are imported by judging (judging/imports/), on the same `files`. What other modules use is named here.
"""

from .datasets import import_dataset, validate_messages
from .files import (
    MAX_PROBLEMS,
    ImportFailed,
    ImportProblems,
    ReadMeter,
    check_size,
    collect,
    iter_json_lines,
    iter_lines,
    raise_problems,
    read_text,
    refuse_oversized,
)
from .questions import import_questions, read_questions

__all__ = [
    "MAX_PROBLEMS", "ImportFailed", "ImportProblems", "ReadMeter", "check_size", "collect", "import_dataset",
    "import_questions", "iter_json_lines", "iter_lines", "raise_problems", "read_questions", "read_text",
    "refuse_oversized", "validate_messages",
]
