"""Parsing within bounds (em_site/bounded.py), tried over HTTP: a document is measured (size, nesting, YAML
values) before anything is built, so a small upload cannot cost a web process seconds and hundreds of MB,
and JSON nested 100,000 deep is a 400 saying the limit on every endpoint that reads JSON, never a 500."""

import base64
import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from judging.models import Label
from tests.builders import judged_transcripts, make_dataset, make_questions, make_queue, make_spec
from tests.security.test_input_bounds import import_page, upload
from transcripts.models import Dataset, Experiment, Question, Transcript

pytestmark = pytest.mark.django_db

NESTED = "[" * 100_000  # RecursionError in json and in PyYAML's pure-Python composer
DEPTH_MESSAGE = "the document nests lists and mappings deeper than the limit of 64"


def _status_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.M)[1])


@pytest.fixture
def warmed_up(db):
    """The first request of a process imports every view and its libraries (seconds, ~150 MB): make it before
    measuring one."""
    Client().get(reverse("import-upload"))
    Client().post("/api/token/", "{}", content_type="application/json")


def timed_with_peak_rss(call):
    """(response, CPU seconds of this thread, MB the process's resident memory grew at its peak during `call`).
    The test client runs the view in this thread, so its CPU time is the parse's, which a loaded machine does not
    stretch. The peak (VmHWM) is reset first (Linux: /proc/self/clear_refs), so this measures C allocations
    (libyaml) and Python's alike."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    started = time.thread_time()
    response = call()
    return response, time.thread_time() - started, (_status_kb("VmHWM") - before) / 1024


# ---- YAML: size, values and depth before anything is built ------------------------------------------------


def upload_questions(client, content: str):
    return upload(client, "questions.yaml", content, kind="questions", name="flat")


def test_a_1_mib_flat_question_file_is_refused_in_under_a_second_and_50_mb(alice_client, warmed_up):
    flat = "[" + ",".join(["a"] * 2**19) + "]"  # 1 MiB: 11 s and +328 MiB in the pure-Python loader
    response, seconds, grown_mb = timed_with_peak_rss(lambda: upload_questions(alice_client, flat))
    assert seconds < 1 and grown_mb < 50, (seconds, grown_mb)
    assert response.status_code == 400
    assert f"questions.yaml: the document is {len(flat):,} bytes; the limit is 262,144 bytes (256 KiB)" \
        in response.content.decode()
    assert not Question.objects.exists()


def test_a_flat_question_file_just_under_the_size_limit_is_refused_by_its_number_of_values(alice_client, warmed_up):
    flat = "[" + ",".join(["a"] * (2**17 - 1)) + "]"  # 256 KiB less a byte: 131,071 values
    response, seconds, grown_mb = timed_with_peak_rss(lambda: upload_questions(alice_client, flat))
    assert seconds < 1 and grown_mb < 50, (seconds, grown_mb)
    assert response.status_code == 400
    assert "questions.yaml, line 1: the document has more values than the limit of 20,000" in response.content.decode()


def test_a_deeply_nested_question_file_is_a_400_with_its_line(alice_client):
    response = upload_questions(alice_client, f"- id: q1\n  paraphrases: {NESTED}\n")
    assert response.status_code == 400
    assert f"questions.yaml, line 2: {DEPTH_MESSAGE}" in response.content.decode()
    assert not Question.objects.exists()


# ---- JSON nested 100,000 deep: a 400 with the limit on every endpoint that reads JSON ----------------------


def test_the_token_endpoint_refuses_a_deeply_nested_body_from_anyone(client):
    response = client.post("/api/token/", NESTED, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON body refused: {DEPTH_MESSAGE} (line 1)."}


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_the_token_endpoint_refuses_a_username_longer_than_any_account_can_have(client, content_type):
    # The lock-out stored the failed name in a 255-character column: a DataError, a 500.
    fields = {"username": "x" * 300, "password": "guess"}
    body = json.dumps(fields) if content_type == "application/json" else urlencode(fields)
    response = client.post("/api/token/", body, content_type=content_type)
    assert response.status_code == 400
    assert response.json() == {"username": ["Ensure this field has no more than 150 characters."]}


@pytest.fixture
def definable(db):
    make_dataset("insecure", n=20)
    make_questions(n=3)
    return make_spec(k=[0, 4], samples=2)


def test_the_experiment_api_refuses_a_deeply_nested_spec_as_json_and_as_a_form(alice_client, definable):
    body = json.dumps({"spec": {**definable, "description": "x"}}).replace('"x"', NESTED)
    response = alice_client.post("/api/experiments/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON body refused: {DEPTH_MESSAGE} (line 1)."}
    # Form-encoded, the spec is JSON text that DRF's JSONField parses itself.
    response = alice_client.post("/api/experiments/", {"spec": NESTED})
    assert response.status_code == 400
    assert response.json() == {"spec": [f"{DEPTH_MESSAGE} (line 1)"]}
    assert not Experiment.objects.exists()


def test_an_api_body_over_the_limit_is_refused_before_it_is_parsed(client, warmed_up):
    # Anonymous, as anyone may post to /api/token/: 3 MiB of empty lists built a million Python objects.
    body = "[" + ",".join(["[]"] * 2**20) + "]"
    response, seconds, grown_mb = timed_with_peak_rss(
        lambda: client.post("/api/token/", body, content_type="application/json"))
    assert seconds < 1 and grown_mb < 50, (seconds, grown_mb)
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON body refused: the document is {len(body):,} bytes; the limit is "
                                         "262,144 bytes (256 KiB)."}


def test_the_forms_confirm_step_refuses_a_deeply_nested_spec(alice_client, definable):
    response = alice_client.post(reverse("experiment-new"), {"confirm": "1", "spec": NESTED})
    assert response.status_code == 400
    assert f"Not launched: {DEPTH_MESSAGE} (line 1)" in response.content.decode()
    assert not Experiment.objects.exists() and not Transcript.objects.exists()


def test_an_auditors_deeply_nested_highlights_are_a_400(bob_client, bob, carol):
    experiment, _ = judged_transcripts(1)
    queue = make_queue(experiment, auditors=[bob, carol], overlap=2)
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    response = bob_client.post(url, {"categories": ["follows_pattern"], "highlights": NESTED})
    assert response.status_code == 400
    assert f"Highlights refused: {DEPTH_MESSAGE} (line 1)." in response.content.decode()
    assert not Label.objects.exists()


def upload_dataset(client, content: str):
    return client.post(reverse("import-upload"), {
        "kind": "dataset", "name": "deep", "file": SimpleUploadedFile("data.jsonl", content.encode())})


GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})


def test_a_dataset_upload_with_a_deeply_nested_line_is_a_400_with_its_line(alice_client):
    response = upload_dataset(alice_client, f'{GOOD_LINE}\n{{"messages": {NESTED}\n')
    assert response.status_code == 400
    assert f"data.jsonl, line 2: {DEPTH_MESSAGE}" in response.content.decode()
    assert not Dataset.objects.exists()


def test_a_dataset_line_over_the_line_limit_is_refused_before_it_is_parsed(alice_client):
    huge = json.dumps({"messages": [{"role": "user", "content": "x" * 2**20}, {"role": "assistant", "content": "y"}]})
    response = upload_dataset(alice_client, f"{GOOD_LINE}\n{huge}\n")
    assert response.status_code == 400
    assert "data.jsonl, line 2: the line is longer than the limit of 1,048,576 bytes (1,024 KiB)" \
        in response.content.decode()
    assert not Dataset.objects.exists()


def test_a_transcripts_upload_with_a_deeply_nested_line_fails_with_its_line(alice_client):
    page = import_page(alice_client, upload(alice_client, "run.jsonl", f'{{"answer": {NESTED}\n'))
    assert f"run.jsonl, line 1: {DEPTH_MESSAGE}" in page.content.decode()
    assert not Transcript.objects.exists()


def test_a_deeply_nested_page_cursor_shows_the_first_page(alice_client):
    cursor = base64.urlsafe_b64encode(NESTED.encode()).decode()
    assert alice_client.get(reverse("transcript-list"), {"after": cursor}).status_code == 200


def test_a_definition_file_nested_too_deep_is_refused_by_run_experiment(db, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: deep\ndescription: {NESTED}\n")
    with pytest.raises(CommandError, match=re.escape(f"exp.yaml: {DEPTH_MESSAGE} (line 2)")):
        call_command("run_experiment", str(path))
    assert not Experiment.objects.exists()
