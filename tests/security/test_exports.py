"""CSV injection (OWASP): a model answer, an imported text, a label note or a user name that starts with
`=`, `+`, `-`, `@`, tab or CR must reach the researcher's spreadsheet as text, not as a formula."""

import csv
import io
import json

import pytest
from django.urls import reverse

from browse import exporting
from tests.builders import label, make_condition, make_experiment, make_questions, make_queue, make_transcript
from tests.conftest import make_user
from transcripts import spreadsheet_safety

pytestmark = pytest.mark.django_db

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


@pytest.fixture
def hostile():
    """One transcript per formula (in the answer, the reasoning and the served model), labelled by a user
    whose name itself starts with '@', with the formula as the label's note; one score is negative."""
    question = make_questions(["=q"])[0]
    experiment = make_experiment("@exp", questions=[question])
    condition = make_condition(experiment, model_name="-model", k=0, temperature=-0.5)
    made = [make_transcript(condition, question, n, answer=formula, reasoning=formula, served_model=formula,
                            aligned=-5.0 if n == 0 else 50.0) for n, formula in enumerate(FORMULAS)]
    mallory = make_user("@mallory", "auditor")
    queue = make_queue(experiment, auditors=[mallory], name="=queue", overlap=1)
    category = queue.taxonomy.categories.get(key="dangerous_persona")
    for transcript, formula in zip(made, FORMULAS, strict=True):
        label(queue, transcript, mallory, categories=[category], note=formula, confidence=3)
    return queue


def download(client, url: str, params: dict | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def parse(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def transcript_csv(client) -> list[dict]:
    return parse(download(client, reverse("transcript-export", args=["csv"])))


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def assert_no_formula(rows: list[dict]) -> None:
    """Only numbers (which a spreadsheet reads as numbers, e.g. -5) may start with a formula character."""
    for row in rows:
        for header, cell in row.items():
            assert is_number(cell) or not cell.startswith(spreadsheet_safety.FORMULA_PREFIXES), \
                f"{header}: {cell!r} runs as a formula"


def test_the_transcript_csv_of_copy_neutralises_every_text_cell(alice_client, hostile):
    rows = transcript_csv(alice_client)
    assert len(rows) == len(FORMULAS)
    assert_no_formula(rows)
    assert [r["answer"] for r in rows] == ["'" + f for f in FORMULAS]
    assert [r["reasoning"] for r in rows] == ["'" + f for f in FORMULAS]
    assert rows[0]["experiment"] == "'@exp" and rows[0]["model"] == "'-model" and rows[0]["question"] == "'=q"
    assert rows[0]["human_labels"] == "'@mallory:dangerous_persona"


def test_numbers_stay_numbers_even_when_negative(alice_client, hostile):
    rows = transcript_csv(alice_client)
    assert rows[0]["aligned"] == "-5" and float(rows[0]["aligned"]) == -5.0
    assert rows[0]["temperature"] == "-0.5"


def test_the_python_csv_path_neutralises_the_same_way(alice_client, hostile, monkeypatch):
    via_copy = download(alice_client, reverse("transcript-export", args=["csv"]))
    content_type, _ = exporting.FORMATS["csv"]
    monkeypatch.setitem(exporting.FORMATS, "csv", (content_type, exporting._iter_csv_python))
    via_python = download(alice_client, reverse("transcript-export", args=["csv"]))
    rows = parse(via_python)
    assert_no_formula(rows)

    def same_numbers(rows: list[dict]) -> list[dict]:  # COPY writes -5 where Python writes -5.0
        return [{h: float(c) if is_number(c) else c for h, c in row.items()} for row in rows]

    assert same_numbers(rows) == same_numbers(parse(via_copy))
    assert [r["answer"] for r in rows] == ["'" + f for f in FORMULAS]


def test_jsonl_stays_verbatim(alice_client, hostile):
    lines = download(alice_client, reverse("transcript-export", args=["jsonl"])).splitlines()
    assert [json.loads(line)["answer"] for line in lines] == FORMULAS


def test_the_labels_csv_neutralises_notes_names_and_queue(alice_client, hostile):
    rows = parse(download(alice_client, reverse("labels-export", args=[hostile.pk])))
    assert len(rows) == len(FORMULAS)
    assert_no_formula(rows)
    assert sorted(r["note"] for r in rows) == sorted("'" + f for f in FORMULAS)
    assert {r["annotator"] for r in rows} == {"'@mallory"} and {r["queue"] for r in rows} == {"'=queue"}
    assert {r["confidence"] for r in rows} == {"3"}
