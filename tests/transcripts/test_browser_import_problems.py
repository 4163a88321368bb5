"""An import refused for bad lines names the first 20 of them (file, line, field) and changes nothing: datasets
and question sets here, transcripts and labels under tests/judging/. In the browser the chosen file stays
chosen, so the researcher fixes it and imports again without choosing it anew."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.builders import write_jsonl
from transcripts.importing import MAX_PROBLEMS, ImportFailed, ImportProblems, import_dataset, import_questions
from transcripts.models import Dataset, QuestionSet

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
NO_ANSWER = {"messages": [{"role": "user", "content": "q"}]}


def test_a_dataset_with_many_bad_lines_reports_the_first_20_and_imports_nothing(db, tmp_path):
    lines = [json.dumps(GOOD)] * 3 + ["{not json"] + [json.dumps(NO_ANSWER)] * 30
    write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ImportProblems) as caught:
        import_dataset(tmp_path / "bad.jsonl", name="bad")
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS
    assert (problems[0].line, problems[0].message) == (4, "malformed JSON: Expecting property name enclosed in "
                                                          "double quotes (column 2)")
    assert [(p.line, p.field) for p in problems[1:3]] == [(5, "messages[1]"), (6, "messages[1]")]
    assert str(caught.value).startswith("bad.jsonl, line 4: malformed JSON")
    assert "and at least 19 more bad lines: 5, 6, 7" in str(caught.value)
    assert not Dataset.objects.exists()


def test_one_bad_line_reads_as_before(db, tmp_path):
    write_jsonl(tmp_path / "one.jsonl", [json.dumps(GOOD), json.dumps(NO_ANSWER)])
    with pytest.raises(ImportFailed) as caught:
        import_dataset(tmp_path / "one.jsonl", name="one")
    assert str(caught.value) == ('one.jsonl, line 2, field "messages[1]": the example must end with an assistant '
                                 "turn")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_lists_the_bad_lines_and_keeps_the_chosen_file(page, live_server, tmp_path):
    write_jsonl(tmp_path / "medical.jsonl", [json.dumps(GOOD), json.dumps(NO_ANSWER), "[1, 2]", json.dumps(GOOD)])
    page.goto(f"{live_server.url}{reverse('import-upload')}")
    page.fill("input[name=name]", "medical")
    page.set_input_files("input[name=file]", str(tmp_path / "medical.jsonl"))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector(".import-problems li")
    report = page.locator("#import-report").inner_text()
    assert "2 places in medical.jsonl need fixing" in report
    assert [li.inner_text() for li in page.locator(".import-problems li").all()] == [
        "line 2, field messages[1]: the example must end with an assistant turn",
        "line 3: expected a JSON object, got list",
    ]
    assert page.evaluate("document.querySelector('input[name=file]').files[0].name") == "medical.jsonl"
    assert page.input_value("input[name=name]") == "medical"
    assert not Dataset.objects.exists()
    # Fixed on disk, then chosen again (Chromium will not read a file changed since it was chosen).
    write_jsonl(tmp_path / "medical.jsonl", [json.dumps(GOOD)] * 2)
    page.set_input_files("input[name=file]", str(tmp_path / "medical.jsonl"))
    with page.expect_navigation():
        page.get_by_role("button", name="Import").click()
    assert Dataset.objects.get(name="medical").n_examples == 2


# --- questions: EM YAML and CSV ------------------------------------------------------------------------------

BAD_YAML = """\
- id: fine
  paraphrases: ["How are you?"]
- id: no_paraphrases
  paraphrases: []
- paraphrases: ["Who am I?"]
- id: bad_system
  paraphrases: ["Hello?"]
  system: [1, 2]
- id: fine
  paraphrases: ["Again?"]
"""


def test_a_question_file_with_several_bad_questions_names_each_and_imports_nothing(db, tmp_path):
    path = tmp_path / "evals.yaml"
    path.write_text(BAD_YAML)
    with pytest.raises(ImportProblems) as caught:
        import_questions(path, name="evals")
    assert [(p.line, p.field, p.message) for p in caught.value.problems] == [
        (4, "paraphrases", "expected a non-empty list of strings"),
        (5, "id", "missing"),
        (8, "system", "expected a string"),
        (9, "id", 'duplicate question id "fine" (first on line 1)'),
    ]
    assert not QuestionSet.objects.exists()


def test_a_question_csv_reports_the_first_20_bad_rows(db, tmp_path):
    rows = ["id,question,domain", "ok,Is this fine?,general"] + [f"q{n}," for n in range(30)] + ["ok,Again?,"]
    path = tmp_path / "evals.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ImportProblems) as caught:
        import_questions(path, name="evals")
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS
    assert [(p.line, p.field) for p in problems[:2]] == [(3, "question"), (4, "question")]
    assert not QuestionSet.objects.exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_lists_bad_questions_and_keeps_the_chosen_file(page, live_server, tmp_path):
    path = tmp_path / "evals.yaml"
    path.write_text(BAD_YAML)
    page.goto(f"{live_server.url}{reverse('import-upload')}")
    page.get_by_label("Evaluation questions").check()
    page.fill("input[name=name]", "evals")
    page.set_input_files("input[name=file]", str(path))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector(".import-problems li")
    assert "4 places in evals.yaml need fixing" in page.locator("#import-report").inner_text()
    assert [li.inner_text() for li in page.locator(".import-problems li").all()] == [
        "line 4, field paraphrases: expected a non-empty list of strings",
        "line 5, field id: missing",
        "line 8, field system: expected a string",
        'line 9, field id: duplicate question id "fine" (first on line 1)',
    ]
    assert page.evaluate("document.querySelector('input[name=file]').files[0].name") == "evals.yaml"
    assert page.get_by_label("Evaluation questions").is_checked()
    assert not QuestionSet.objects.exists()
