"""`transcripts` never names `judging`, in the ways an import contract cannot see: an `apps.get_model("judging", …)`
string, one of judging's SQL table names, a reverse relation into judging's models (`judge_scores__…`,
`transcript.queue_items`), a `{% load %}` of judging's template tags, one of judging's URL names (`{% url %}`,
`reverse`, `redirect`) or one of judging's templates. Pages that read both apps live in `browse`, above both.

The names are read from judging itself (its models, template libraries and URLconf), so a new model, tag library
or URL is covered without editing this test. Each rule is shown to catch a violation planted in a copy of the code.
"""

from __future__ import annotations

import re
import shutil
from functools import cache
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.template.backends.django import get_installed_libraries
from django.urls import URLResolver

from tests.conftest import ROOT

JUDGING = "judging"
CODE = Path("transcripts")  # the app's Python (and any templates kept inside it)
TEMPLATES = Path("templates") / "transcripts"


def _url_names(patterns: list) -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= _url_names(pattern.url_patterns)
        elif pattern.name:
            names.add(pattern.name)
    return names


def _alternatives(names: set[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


@cache
def rules() -> dict[str, re.Pattern]:
    """Rule name → the pattern that finds it in a line of transcripts' code or templates."""
    models = list(apps.get_app_config(JUDGING).get_models())
    tables = {model._meta.db_table for model in models}
    # Relations from judging's models to any other model: their reverse accessor and query name are judging's
    # field paths, whichever model they are walked from (a transcript, an experiment, a user).
    accessors, query_names = set(), set()
    for model in models:
        for field in model._meta.get_fields():
            if field.is_relation and not field.auto_created and field.related_model is not None \
                    and field.related_model._meta.app_label != JUDGING and not field.remote_field.hidden:
                accessors.add(field.remote_field.get_accessor_name())
                query_names.add(field.related_query_name())
    libraries = {name for name, module in get_installed_libraries().items() if module.startswith(f"{JUDGING}.")}
    url_names = _url_names(import_module(f"{JUDGING}.urls").urlpatterns)
    return {
        "get_model of judging": re.compile(rf"""get_model\(\s*["']{JUDGING}["']|["']{JUDGING}\.\w+["']"""),
        "judging's SQL table": re.compile(rf"\b({_alternatives(tables)}|{JUDGING}_[a-z]\w*)\b"),
        "reverse relation into judging": re.compile(
            rf"\.({_alternatives(accessors)})\b"  # transcript.judge_scores
            rf"|\b({_alternatives(query_names)})__\w"  # judge_scores__rubric_version
            rf"""|["']({_alternatives(accessors | query_names)})["']"""  # prefetch_related("judge_scores")
        ),
        "judging's template tags": re.compile(rf"{{%\s*load\s+([\w ]*\s)?({_alternatives(libraries)})[\s%]"),
        "judging's URL name": re.compile(rf"""["']({_alternatives(url_names)})["']"""),
        "judging's template": re.compile(rf"""["']{JUDGING}/[\w/.-]+["']"""),
    }


def violations(root: Path) -> list[str]:
    """Every line of transcripts' Python and templates under `root` that names judging, as `path:line: rule`."""
    files = [*sorted((root / CODE).rglob("*.py")), *sorted((root / CODE).rglob("*.html")),
             *sorted((root / TEMPLATES).rglob("*.html"))]
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found += [f"{path.relative_to(root)}:{number}: {rule}: {line.strip()}"
                      for rule, pattern in rules().items() if pattern.search(line)]
    return found


def test_transcripts_never_names_judging():
    assert violations(ROOT) == []


PLANTED = [
    (CODE / "views.py", 'Label = apps.get_model("judging", "Label")', "get_model of judging"),
    (CODE / "aggregates.py", 'cursor.execute("SELECT count(*) FROM judging_label")', "judging's SQL table"),
    (CODE / "views.py", "scores = transcript.judge_scores.all()", "reverse relation into judging"),
    (CODE / "aggregates.py", "rows = Transcript.objects.filter(queue_items__label_count__gt=0)",
     "reverse relation into judging"),
    (CODE / "views.py", 'rows = Transcript.objects.prefetch_related("gold_items")', "reverse relation into judging"),
    (TEMPLATES / "dataset_detail.html", "{% load humanize spans %}", "judging's template tags"),
    (TEMPLATES / "experiment_list.html", "<a href=\"{% url 'experiment-results' e.pk %}\">results</a>",
     "judging's URL name"),
    (CODE / "experiment_views.py", 'return redirect("queue-detail", pk=queue.pk)', "judging's URL name"),
    (TEMPLATES / "dataset_list.html", '{% include "judging/report_state.html" %}', "judging's template"),
]


@pytest.mark.parametrize(("path", "line", "rule"), PLANTED, ids=[f"{rule}: {line}" for _, line, rule in PLANTED])
def test_a_planted_violation_is_caught(tmp_path, path, line, rule):
    for tree in (CODE, TEMPLATES):
        shutil.copytree(ROOT / tree, tmp_path / tree, ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / path
    planted.write_text(planted.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    found = violations(tmp_path)
    assert found, "the planted line was not caught"
    assert all(v.startswith(f"{path}:{len(planted.read_text().splitlines())}: ") for v in found), found
    assert rule in {v.split(": ", 2)[1] for v in found}
