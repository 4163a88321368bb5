"""judging/verdicts.py is the one writer of the verdict cache on Transcript and the one place the misaligned
rule lives (issue #15). This reads the application's source (not the tests, not migrations, which freeze
history) and fails on any other module that compares an aligned/coherent score with a threshold or writes a
cache column, in Python, in ORM lookups or in SQL strings. Synthetic sources prove that it catches each form."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRITER = "judging/verdicts.py"
APPS = ("judging", "transcripts", "analysis", "em_site")
CACHE_COLUMNS = {"aligned", "coherent", "judge_outcome", "misaligned", "judge_category", "human_category"}
SCORES = {"aligned", "coherent"}
ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
ORDERING_LOOKUPS = {"LessThan", "LessThanOrEqual", "GreaterThan", "GreaterThanOrEqual"}
SCORE_LOOKUP = re.compile(r"(^|__)(aligned|coherent|score)__(lt|lte|gt|gte)$")
WRITES = {"update", "create", "get_or_create", "update_or_create"}
SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|WHERE|CASE)\b")  # upper case, as this code base writes SQL
SQL_COMPARISON = re.compile(r"\b(aligned|coherent)\s*(<|>)", re.IGNORECASE)
SQL_WRITE = re.compile(
    r"(UPDATE\s+\"?transcripts_transcript\"?\b[\s\S]*\bSET\b|INSERT\s+INTO\s+\"?transcripts_transcript\"?\s*\()"
    r"[\s\S]*\b(" + "|".join(sorted(CACHE_COLUMNS)) + r")\b",
    re.IGNORECASE,
)


def _words(node: ast.AST) -> set[str]:
    """The identifiers, attribute names and string constants in an expression."""
    words = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            words.add(child.id)
        elif isinstance(child, ast.Attribute):
            words.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            words.add(child.value)
    return words


def _is_score_or_threshold(node: ast.AST) -> bool:
    words = _words(node)
    return bool(words & SCORES) or any("threshold" in word for word in words)


def _target_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _on_another_model(call: ast.Call) -> bool:
    """`Label.objects.create(…)`: a write through a model class other than Transcript."""
    root = call.func
    while isinstance(root, ast.Attribute | ast.Call | ast.Subscript):
        root = root.func if isinstance(root, ast.Call) else root.value
    return isinstance(root, ast.Name) and root.id[:1].isupper() and root.id != "Transcript"


def _names_a_transcript(node: ast.AST) -> bool:
    return any("transcript" in word.lower() for word in _words(node))


def _cache_fields(node: ast.AST) -> set[str]:
    """Cache column names listed in a literal list/tuple/set (update_fields, bulk_update's fields)."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return {e.value for e in node.elts if isinstance(e, ast.Constant)} & CACHE_COLUMNS
    return set()


def violations(source: str) -> list[str]:
    """`line: what` for each place the source applies the misaligned rule or writes the verdict cache."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
                if isinstance(op, ORDERING) and (_is_score_or_threshold(left) or _is_score_or_threshold(right)):
                    found.append(f"{line}: compares a score or threshold")
        elif isinstance(node, ast.Call):
            name = _target_name(node)
            if name in ORDERING_LOOKUPS and any(_is_score_or_threshold(arg) for arg in node.args):
                found.append(f"{line}: {name} on a score or threshold")
            writes = (name in WRITES and not _on_another_model(node)) or name == "Transcript"
            for keyword in node.keywords:
                if keyword.arg and SCORE_LOOKUP.search(keyword.arg):
                    found.append(f"{line}: lookup {keyword.arg}")
                if keyword.arg in CACHE_COLUMNS and writes:
                    found.append(f"{line}: {name}({keyword.arg}=…) writes the cache")
                if (keyword.arg == "update_fields" or (name, keyword.arg) == ("bulk_update", "fields")) \
                        and _cache_fields(keyword.value):
                    found.append(f"{line}: {name}({keyword.arg}=…) writes the cache")
                if keyword.arg == "defaults" and writes and isinstance(keyword.value, ast.Dict):
                    keys = {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)} & CACHE_COLUMNS
                    found += [f"{line}: {name}(defaults={{{key!r}: …}}) writes the cache" for key in keys]
            if name == "bulk_update" and len(node.args) > 1 and _cache_fields(node.args[1]):
                found.append(f"{line}: bulk_update writes the cache")
            if name == "setattr" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in CACHE_COLUMNS:
                found.append(f"{line}: setattr(…, {node.args[1].value!r}) writes the cache")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in ast.walk(target):
                    if isinstance(element, ast.Attribute) and element.attr in CACHE_COLUMNS \
                            and _names_a_transcript(element.value):
                        found.append(f"{line}: assigns .{element.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            if SQL_COMPARISON.search(node.value):
                found.append(f"{line}: SQL compares a score")
            if SQL_WRITE.search(node.value):
                found.append(f"{line}: SQL writes the cache")
    return found


def _application_sources() -> list[Path]:
    return sorted(
        path for app in APPS for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts
    )


def test_only_the_verdict_writer_applies_the_rule_or_writes_the_cache():
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _application_sources()
        if str(path.relative_to(ROOT)) != WRITER and (found := violations(path.read_text()))
    }
    assert offenders == {}


def test_the_writer_itself_is_seen_doing_both():
    """The scan recognises the real writer: it would not pass by reading nothing."""
    found = violations((ROOT / WRITER).read_text())
    assert any("writes the cache" in v for v in found) and any("score or threshold" in v for v in found)
    assert len(_application_sources()) > 50


@pytest.mark.parametrize("source", [
    "misaligned = aligned < 30",
    "flag = row.aligned < experiment.aligned_threshold and row.coherent > 50",
    "if 50 < scores['coherent']:\n    pass",
    "bad = score > self.coherent_threshold",
    "qs = Transcript.objects.filter(aligned__lt=30, coherent__gt=50)",
    "q = Q(a__score__lt=limit)",
    "expr = LessThan(F('aligned'), 30)",
    "Transcript.objects.filter(pk=1).update(misaligned=True)",
    "rows.update(human_category='x')",
    "Transcript(experiment=e, judge_outcome='score')",
    "Transcript.objects.update_or_create(pk=1, defaults={'judge_category': 'x'})",
    "transcript.misaligned = False",
    "self.transcript.aligned += 1",
    "t.save(update_fields=['misaligned'])",
    "Transcript.objects.bulk_update(rows, ['judge_category'])",
    "Transcript.objects.bulk_update(rows, fields=('aligned',))",
    "setattr(transcript, 'coherent', 3)",
    "cursor.execute('UPDATE transcripts_transcript SET misaligned = true')",
    "cursor.execute('INSERT INTO transcripts_transcript (id, judge_outcome) VALUES (1, %s)')",
    "sql = 'SELECT id FROM transcripts_transcript WHERE aligned < 30'",
])
def test_it_catches_each_form_of_the_rule_or_a_cache_write(source):
    assert violations(source), source


@pytest.mark.parametrize("source", [
    "versions = Versions(aligned=a, coherent=c)",
    "rows = Transcript.objects.filter(misaligned=True, aligned__isnull=False).order_by('aligned')",
    "label = Label(item=item, misaligned=True)",
    "Label.objects.update_or_create(item=item, defaults={'misaligned': True})",
    "question.misaligned += row['misaligned']",
    "help_text = 'Misaligned when aligned < this'",
    "index = models.Index(fields=['misaligned', 'id'], name='x')",
    "if len(rows) < 20:\n    pass",
    "lines = [experiment.aligned_threshold, experiment.coherent_threshold]",
    "flags = verdicts.misaligned_of(outcome, aligned, coherent, thresholds_of(experiment))",
])
def test_it_lets_reading_and_other_models_be(source):
    assert violations(source) == []
