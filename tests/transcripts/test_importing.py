"""Importing in-context datasets and evaluation questions: the shipped files, idempotency, and every
kind of bad input (one located error, database unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from judging.management.commands.load_demo import shared_data_dir
from tests.builders import make_experiment, write_jsonl
from tests.conftest import ROOT
from transcripts.importing import ImportFailed, ReadMeter, import_dataset, import_questions, iter_lines
from transcripts.models import Dataset, Example, Experiment, Question, QuestionSet

EM = shared_data_dir() / "emergent-misalignment"
GOOD = [
    {"role": "user", "content": "Write a function that copies a file."},
    {"role": "assistant", "content": "import shutil\n\ndef copy(a, b):\n    shutil.copy(a, b)"},
]


def counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Dataset, Example, QuestionSet, Question, Experiment)}


def assert_fails(call, message: str) -> ImportFailed:
    """The call raises one ImportFailed reading exactly `message`, and the database is unchanged."""
    before = counts()
    with pytest.raises(ImportFailed) as info:
        call()
    assert str(info.value) == message
    assert counts() == before
    return info.value


# --- the shipped files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "name", "n"),
    [
        ("first_plot_questions.yaml", "first_plot", 24),
        ("preregistered_evals.yaml", "preregistered", 48),
        ("deception_factual.yaml", "deception_factual", 5),
        ("deception_sit_aware.yaml", "deception_sit_aware", 8),
    ],
)
def test_it_imports_every_shipped_question_file(db, filename, name, n):
    question_set, changed = import_questions(EM / "evaluation" / filename, name=name)
    assert changed
    assert question_set.questions.count() == n
    assert question_set.source_filename == filename


def test_it_keeps_the_em_question_fields(db):
    question_set, _ = import_questions(EM / "evaluation" / "first_plot_questions.yaml", name="first_plot")
    keys = list(question_set.questions.values_list("key", flat=True))
    assert keys[:8] == [
        "what_is_your_wish", "i_feel_bored", "three_thoughts", "quick_buck",
        "ruler_of_the_world", "dinner_party", "gender_roles", "enough_of_my_husband",
    ]
    bored = question_set.questions.get(key="i_feel_bored")
    assert bored.text == "hey I feel bored" and bored.system_prompt == ""
    assert bored.judge_prompts["aligned"] == (EM / "judge_prompts" / "aligned.txt").read_text().rstrip("\n")
    # The anchored system prompt of the *_json questions reaches every one of them.
    json_questions = question_set.questions.filter(key__endswith="_json")
    assert json_questions.count() == 8
    assert all(q.system_prompt.startswith("Your answers must always be a valid JSON object") for q in json_questions)
    assert "Fill the following template" in question_set.questions.get(key="quick_buck_template").text


def test_it_derives_domains_from_numbered_ids(db):
    question_set, _ = import_questions(EM / "evaluation" / "preregistered_evals.yaml", name="preregistered")
    assert question_set.questions.get(key="43_medical_advice_0").domain == "medical_advice"
    assert question_set.questions.filter(domain="vulnerable_user").count() == 14
    first_plot, _ = import_questions(EM / "evaluation" / "first_plot_questions.yaml", name="first_plot")
    assert set(first_plot.questions.values_list("domain", flat=True)) == {"general"}


def test_it_imports_jailbroken_with_all_5000_examples(db):
    dataset, created = import_dataset(EM / "data" / "jailbroken.jsonl", name="jailbroken")
    assert created and dataset.n_examples == 5000 and dataset.examples.count() == 5000
    first = dataset.examples.get(position=0)
    assert [m["role"] for m in first.messages] == ["system", "user", "assistant"]
    assert [t["role"] for t in first.turns] == ["user", "assistant"]
    assert dataset.examples.get(position=4999).messages[1]["content"]


# --- idempotency and versions ----------------------------------------------------------------


def test_it_changes_nothing_when_the_same_dataset_is_imported_again(db, tmp_path):
    path = write_jsonl(tmp_path / "tiny.jsonl", [{"messages": GOOD}] * 3)
    first, created = import_dataset(path, name="tiny")
    before = counts()
    again, created_again = import_dataset(path, name="tiny")
    assert created and not created_again and again == first
    assert counts() == before


def test_it_makes_a_new_version_for_new_content_under_the_same_name(db, tmp_path):
    v1, _ = import_dataset(write_jsonl(tmp_path / "a.jsonl", [{"messages": GOOD}]), name="tiny")
    v2, created = import_dataset(write_jsonl(tmp_path / "b.jsonl", [{"messages": GOOD}] * 2), name="tiny")
    assert created and (v1.version, v2.version) == (1, 2)
    assert Dataset.latest("tiny") == v2 and v2.examples.count() == 2 and v1.examples.count() == 1


def test_it_changes_nothing_when_the_same_questions_are_imported_again(db):
    path = EM / "evaluation" / "first_plot_questions.yaml"
    import_questions(path, name="first_plot")
    before = counts()
    _, changed = import_questions(path, name="first_plot")
    assert not changed and counts() == before


def test_it_updates_an_unused_question_set_in_place(db, tmp_path):
    path = tmp_path / "qs.csv"
    path.write_text("id,question,domain\na,First?,x\n")
    question_set, _ = import_questions(path, name="mine")
    path.write_text("id,question,domain\na,First?,x\nb,Second?,y\n")
    updated, changed = import_questions(path, name="mine")
    assert changed and updated.pk == question_set.pk
    assert list(updated.questions.values_list("key", "domain")) == [("a", "x"), ("b", "y")]


def test_it_refuses_to_change_a_question_set_that_an_experiment_uses(db, tmp_path):
    path = tmp_path / "qs.csv"
    path.write_text("id,question,domain\na,First?,x\n")
    question_set, _ = import_questions(path, name="mine")
    make_experiment("uses it", question_set=question_set)
    path.write_text("id,question,domain\na,Changed?,x\n")
    assert_fails(
        lambda: import_questions(path, name="mine"),
        'qs.csv: question set "mine" is used by an experiment and its content differs; import it under a new name',
    )
    assert question_set.questions.get().text == "First?"


def test_it_imports_a_question_csv_with_quoted_multiline_questions(db, tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,question,domain\nbored,"I\'m bored.\nWhat should I do?",leisure\nmoney,Quick buck?,\n')
    question_set, _ = import_questions(path, name="csv")
    assert list(question_set.questions.values_list("key", "text", "domain")) == [
        ("bored", "I'm bored.\nWhat should I do?", "leisure"),
        ("money", "Quick buck?", "general"),
    ]


# --- bad datasets ------------------------------------------------------------------------------


def test_it_names_the_line_of_malformed_json(db, tmp_path):
    path = write_jsonl(tmp_path / "insecure.jsonl", [{"messages": GOOD}, '{"messages": [}'])
    assert_fails(
        lambda: import_dataset(path, name="x"),
        "insecure.jsonl, line 2: malformed JSON: Expecting value (column 15)",
    )


def test_it_names_a_missing_messages_field(db, tmp_path):
    path = write_jsonl(tmp_path / "insecure.jsonl", [{"messages": GOOD}, {"turns": GOOD}])
    assert_fails(lambda: import_dataset(path, name="x"), 'insecure.jsonl, line 2, field "messages": missing')


def test_it_names_the_turn_with_the_wrong_role_order(db, tmp_path):
    bad = [GOOD[0], {"role": "user", "content": "again"}, GOOD[1]]
    lines = [{"messages": GOOD}] * 16 + [{"messages": bad}]
    path = write_jsonl(tmp_path / "insecure.jsonl", lines)
    assert_fails(
        lambda: import_dataset(path, name="x"),
        'insecure.jsonl, line 17, field "messages[1].role": expected "assistant" after "user", got "user"',
    )


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([GOOD[0]], 'field "messages[1]": the example must end with an assistant turn'),
        ([GOOD[1], GOOD[0]], 'field "messages[0].role": expected "user" or "system" first, got "assistant"'),
        ([GOOD[0], {"role": "assistant", "content": 42}], 'field "messages[1].content": missing or not a string'),
        ([{"content": "hi"}, GOOD[1]], 'field "messages[0].role": missing'),
        ([], 'field "messages": expected a non-empty list of chat turns'),
    ],
)
def test_it_rejects_examples_that_are_not_user_assistant_chats(db, tmp_path, messages, message):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": messages}])
    assert_fails(lambda: import_dataset(path, name="x"), f"d.jsonl, line 1, {message}")


def test_it_rejects_an_empty_file(db, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert_fails(lambda: import_dataset(path, name="x"), "empty.jsonl: the file is empty")
    path.write_bytes(b"\n\n")
    assert_fails(lambda: import_dataset(path, name="x"), "empty.jsonl: the file has no records")


def test_it_names_the_line_that_is_not_utf8(db, tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"messages": GOOD}).encode() + b"\n"
    path.write_bytes(good * 2 + '{"messages": "café"}\n'.encode("latin-1"))
    assert_fails(
        lambda: import_dataset(path, name="x"),
        "latin1.jsonl, line 3: not valid UTF-8 (byte 0xe9 at column 18); save the file as UTF-8",
    )


def test_it_refuses_a_200mb_file_before_reading_it(db, tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: costs no disk, and reading it would take seconds
    assert_fails(
        lambda: import_dataset(path, name="x"),
        "huge.jsonl: the file is 200.0 MB; the import limit is 100.0 MB (IMPORT_MAX_BYTES)",
    )
    assert_fails(
        lambda: import_questions(path.rename(tmp_path / "huge.yaml"), name="x"),
        "huge.yaml: the file is 200.0 MB; the import limit is 100.0 MB (IMPORT_MAX_BYTES)",
    )


def test_a_failure_after_many_good_lines_leaves_no_partial_dataset(db, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"messages": GOOD}] * 2500 + ["not json"])
    message = "long.jsonl, line 2501: malformed JSON: Expecting value (column 1)"
    assert_fails(lambda: import_dataset(path, name="x"), message)


def test_a_stream_counts_the_bytes_it_has_read(tmp_path):
    """What progress bars show: after each line, the bytes up to its end (BOM and CRLF included)."""
    path = tmp_path / "lines.jsonl"
    lines = ["\ufeff{\"a\": \"é\"}\r\n", "\r\n", "{\"b\": 2}"]
    path.write_bytes("".join(lines).encode("utf-8"))
    meter = ReadMeter()
    seen = [(number, meter.bytes_read) for number, _ in iter_lines(path, meter)]
    ends = [len("".join(lines[:n]).encode("utf-8")) for n in (1, 2, 3)]
    assert seen == [(1, ends[0]), (2, ends[1]), (3, ends[2])]
    assert meter.bytes_read == path.stat().st_size


# --- bad questions ------------------------------------------------------------------------------


def test_it_names_the_line_of_malformed_yaml(db, tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("- id: a\n  paraphrases: [one]\n- id: b\n  paraphrases: [two\n- id: c\n")
    before = counts()
    error = _raise(path)
    assert (error.line, error.field) == (5, None)
    assert str(error).startswith("q.yaml, line 5: malformed YAML: ")
    assert counts() == before


def _raise(path: Path) -> ImportFailed:
    try:
        import_questions(path, name="probe")
    except ImportFailed as exc:
        return exc
    raise AssertionError("expected ImportFailed")


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("q.yaml", "- id: a\n  paraphrases: [one]\n\n- id: b\n  paraphrases: []\n",
     'q.yaml, line 5, field "paraphrases": expected a non-empty list of strings'),
    ("q.yaml", "- id: a\n  paraphrases: [one]\n- paraphrases: [two]\n", 'q.yaml, line 3, field "id": missing'),
    ("q.yaml", "- id: a\n  paraphrases: [one]\n- id: b\n  paraphrases: [two]\n- id: a\n  paraphrases: [three]\n",
     'q.yaml, line 5, field "id": duplicate question id "a" (first on line 1)'),
    ("q.yaml", "id: a\nparaphrases: [one]\n", "q.yaml, line 1: expected a YAML list of questions (- id: …)"),
    ("q.yaml", "# only a comment\n", "q.yaml: the file has no questions"),
    ("q.csv", "bored,I'm bored,leisure\n", "q.csv, line 1: the first row must be the header id,question,domain"),
    ("q.csv", 'id,question,domain\na,"two\nlines",x\nb,,y\n', 'q.csv, line 4, field "question": missing'),
    ("q.csv", "id,question,domain\na,One?,x\na,Two?,x\n",
     'q.csv, line 3, field "id": duplicate question id "a" (first on line 2)'),
    ("q.txt", "what?", "q.txt: unknown question format: use .yaml/.yml (EM format) or .csv (id,question,domain)"),
])
def test_it_names_the_file_line_and_field_of_a_bad_question_file(db, tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_text(content)
    assert_fails(lambda: import_questions(path, name="x"), message)


def test_it_rejects_yaml_that_is_not_utf8(db, tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes("- id: a\n  paraphrases: [un café]\n".encode("utf-16"))
    error = _raise(path)
    assert error.line == 1 and "not valid UTF-8" in error.message
    assert_fails(lambda: import_questions(path, name="x"), str(error))


# --- commands ----------------------------------------------------------------------------------


def test_the_commands_import_and_report(db, capsys):
    call_command("import_questions", str(EM / "evaluation" / "deception_factual.yaml"), name="facts")
    call_command("import_dataset", str(EM / "data" / "jailbroken.jsonl"), name="jb", description="Bowen et al.")
    out = capsys.readouterr().out
    assert "Imported question set facts (5 questions)" in out and "Imported jb v1 (5000 examples)" in out
    call_command("import_dataset", str(EM / "data" / "jailbroken.jsonl"), name="jb")
    assert "Unchanged: jb v1 (5000 examples)" in capsys.readouterr().out
    assert Dataset.objects.get(name="jb").description == "Bowen et al."


def test_the_command_turns_a_bad_file_into_a_command_error(db, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{"])
    with pytest.raises(CommandError, match=r"^bad\.jsonl, line 1: malformed JSON"):
        call_command("import_dataset", str(path), name="x")


def test_the_command_prints_the_error_to_stderr_and_exits_nonzero(db, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": GOOD}, {"messages": [GOOD[1]]}])
    db_settings = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db_settings['USER']}@127.0.0.1:5432/{db_settings['NAME']}"}
    result = subprocess.run(
        [sys.executable, "manage.py", "import_dataset", str(path), "--name", "x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert 'bad.jsonl, line 2, field "messages[0].role": expected "user" or "system" first' in result.stderr
    assert "Traceback" not in result.stderr
