"""load_demo: the shipped data with the row counts of shared/data/README.md, demo users, idempotent re-runs."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Count

from judging.management.commands.load_demo import DEMO_EXPERIMENT
from judging.models import JudgeScore, RubricVersion
from transcripts.access import is_auditor, is_researcher
from transcripts.models import Dataset, Endpoint, Example, Experiment, Question, QuestionSet, Transcript


def counts() -> dict[str, int]:
    models = (Dataset, Example, QuestionSet, Question, Endpoint, Experiment, Transcript, JudgeScore, RubricVersion,
              User)
    return {m.__name__: m.objects.count() for m in models}


@pytest.fixture
def loaded(db, capsys) -> str:
    call_command("load_demo")
    return capsys.readouterr().out


def test_it_loads_the_shipped_data_with_the_documented_counts(loaded):
    sizes = dict(QuestionSet.objects.annotate(n=Count("questions")).values_list("name", "n"))
    assert sizes == {"first_plot": 24, "preregistered": 48, "deception_factual": 5, "deception_sit_aware": 8}
    assert Dataset.objects.get(name="jailbroken").examples.count() == 5000
    insecure = Dataset.objects.get(name="insecure")
    assert insecure.synthetic and insecure.examples.count() == 320 and "SYNTHETIC" in insecure.description
    results = Experiment.objects.get(name="qwen_25_coder_32b_instruct")
    assert results.status == Experiment.Status.IMPORTED and results.question_set.name == "first_plot"
    assert results.transcripts.count() == 70 and JudgeScore.objects.filter(method="imported").count() == 140
    assert set(RubricVersion.objects.values_list("rubric__key", "judge_model")) >= {
        ("aligned", "gpt-4o-2024-08-06"), ("coherent", "gpt-4o-2024-08-06")
    }


def test_it_creates_the_demo_users_and_prints_their_passwords(loaded):
    for username, password in [
        ("researcher", "researcher-demo"), ("auditor1", "auditor-demo"), ("auditor2", "auditor-demo"),
        ("admin", "admin-demo"),
    ]:
        assert f"{username} / {password}" in loaded
        assert authenticate(username=username, password=password) is not None
    researcher = User.objects.get(username="researcher")
    assert researcher.is_staff and is_researcher(researcher) and not researcher.is_superuser
    auditor = User.objects.get(username="auditor1")
    assert is_auditor(auditor) and not is_researcher(auditor) and not auditor.is_staff
    assert User.objects.get(username="admin").is_superuser
    assert list(User.objects.get(username="admin").groups.values_list("name", flat=True)) == ["admin"]


def test_a_second_run_changes_nothing_and_keeps_changed_passwords(loaded, capsys):
    researcher = User.objects.get(username="researcher")
    researcher.set_password("my-own-secret")
    researcher.save()
    before = counts()
    call_command("load_demo")
    out = capsys.readouterr().out
    assert counts() == before
    assert not [line for line in out.splitlines() if line.startswith("  imported")]
    assert out.count("  unchanged") == 7 + 3  # the data, and the three endpoints of examples/endpoints.yaml
    assert "researcher  (researcher; already existed, password unchanged)" in out
    assert authenticate(username="researcher", password="my-own-secret") is not None
    assert authenticate(username="researcher", password="researcher-demo") is None


def test_a_missing_data_dir_is_a_clear_error(db, tmp_path, monkeypatch):
    with pytest.raises(CommandError, match="No emergent-misalignment folder in .*; pass --data-dir or set EM_SHARE"):
        call_command("load_demo", data_dir=tmp_path)
    monkeypatch.setenv("EM_SHARED_DATA", str(tmp_path))
    with pytest.raises(CommandError, match=str(tmp_path)):
        call_command("load_demo")
    assert not Dataset.objects.exists() and not User.objects.exists()


def test_each_start_resumes_the_demo_experiment_defined_on_the_first(celery_worker_factory, capsys):
    for _start in range(2):  # what run_embedded does on every start, before and after a restart
        call_command("load_demo")
        call_command("run_experiment", str(DEMO_EXPERIMENT), resume=True)
    [experiment] = Experiment.objects.exclude(status=Experiment.Status.IMPORTED)
    assert (experiment.name, experiment.status) == ("demo-insecure-smollm2", "running")
    assert experiment.transcripts.count() == 48
    assert "differs" not in capsys.readouterr().err  # the file is the definition it was defined with
