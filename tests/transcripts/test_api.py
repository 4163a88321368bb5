"""The REST API: token auth, role permissions, the browser's filters, cursor pages, schema and docs."""

import csv
import io

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.builders import build_corpus, make_dataset, make_endpoint, make_questions, make_spec
from tests.conftest import token_client
from transcripts.models import Experiment

pytestmark = pytest.mark.django_db

RESEARCH_ENDPOINTS = ["/api/experiments/", "/api/conditions/", "/api/transcripts/", "/api/scores/", "/api/labels/",
                      "/api/transcripts/export/"]


def test_anonymous_clients_get_401_not_a_login_redirect(db):
    for url in RESEARCH_ENDPOINTS:
        assert APIClient().get(url).status_code == 401, url


def test_auditors_get_403_on_every_research_endpoint(bob):
    build_corpus()
    client = token_client(bob)
    for url in RESEARCH_ENDPOINTS:
        assert client.get(url).status_code == 403, url


def test_a_token_is_issued_for_a_password(alice):
    response = APIClient().post(reverse("api-token"), {"username": "alice", "password": "correct-horse-battery"})
    assert response.status_code == 200
    issued = response.json()["token"]
    assert Token.objects.get(user=alice).key == issued
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued}")
    assert client.get("/api/experiments/").status_code == 200


def test_researchers_page_through_all_transcripts_with_a_cursor(alice, bob):
    corpus = build_corpus(bob)
    client = token_client(alice)
    seen, url = [], "/api/transcripts/?page_size=5"
    while url:
        body = client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        assert url is None or ("cursor=" in url and "offset" not in url and "page=" not in url)
    assert seen == sorted([t.pk for t in corpus.transcripts] + [corpus.hostile.pk], reverse=True)


def test_api_filters_agree_with_the_pages(alice, alice_client, bob):
    build_corpus(bob)
    client = token_client(alice)
    for params in ({"model": "model-b", "k": "64"}, {"misaligned": "false", "question": "quick_buck"},
                   {"q": "walk", "aligned_min": "80.5"}, {"labelled": "true"}, {"human_category": "dangerous_persona"}):
        api_ids = [row["id"] for row in client.get("/api/transcripts/", params).json()["results"]]
        page_ids = [row.pk for row in alice_client.get(reverse("transcript-list"), params).context["page"].rows]
        assert api_ids == page_ids and api_ids, params
    assert client.get("/api/transcripts/", {"k": "7"}).status_code == 400


def test_scores_and_labels_take_the_transcript_filters(alice, bob):
    corpus = build_corpus(bob)
    client = token_client(alice)
    scores = client.get("/api/scores/", {"misaligned": "true"}).json()["results"]
    assert sorted(s["transcript"] for s in scores) == sorted(t.pk for t in corpus.transcripts if t.misaligned)
    assert {(s["rubric"], s["rubric_version"], s["judge_model"]) for s in scores} == {("aligned", 1, "judge-1")}
    labels = client.get("/api/labels/", {"model": "model-b"}).json()["results"]
    assert [(lab["auditor"], lab["primary"]) for lab in labels] == [("bob", "dangerous_persona")] * 2
    assert client.get("/api/labels/", {"model": "model-a"}).json()["results"] == []


def test_transcript_detail_carries_condition_and_verdicts(alice, db):
    corpus = build_corpus()
    t = corpus.transcripts[-1]
    body = token_client(alice).get(f"/api/transcripts/{t.pk}/").json()
    assert (body["model"], body["k"], body["question_key"], body["misaligned"]) == ("model-b", 64, "quick_buck", True)


def test_api_export_streams_the_filtered_csv(alice, db):
    corpus = build_corpus()
    response = token_client(alice).get("/api/transcripts/export/", {"misaligned": "true", "fmt": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["id"]) for r in rows] == [t.pk for t in corpus.transcripts if t.misaligned]


def test_researchers_define_experiments_through_the_api_with_the_estimate(alice, db):
    build_corpus()
    make_endpoint(price_prompt_per_mtok=1, price_completion_per_mtok=2)
    client = token_client(alice)
    spec = {"name": "api-defined", "endpoints": ["stub"], "datasets": ["insecure"], "questions": "qs", "k": [0],
            "samples": 2, "budget_usd": 5}
    response = client.post("/api/experiments/", {"spec": spec}, format="json")
    assert response.status_code == 201, response.content
    experiment = Experiment.objects.get(name="api-defined")
    body = response.json()
    assert body["id"] == experiment.pk and experiment.transcripts.count() == 4
    assert (body["status"], body["budget_usd"]) == ("draft", "5.0000")
    [row] = body["estimate"]
    assert (row["purpose"], row["endpoint"], row["calls"], row["completion_tokens"]) == ("generation", "stub", 4, 2400)
    bad = client.post("/api/experiments/", {"spec": {**spec, "datasets": ["nope"]}}, format="json")
    assert bad.status_code == 400 and "nope" in bad.json()["spec"][0]


@pytest.fixture
def defined(alice, celery_worker_factory):
    """An experiment defined through the API (12 slots). celery_worker_factory sends launch()'s messages to
    this test's own Redis database; no worker runs, so slots stay where the actions put them."""
    make_dataset()
    make_questions()
    client = token_client(alice)
    response = client.post("/api/experiments/", {"spec": make_spec()}, format="json")
    return client, Experiment.objects.get(pk=response.json()["id"])


def test_transcripts_say_which_endpoint_version_answered_and_what_the_server_called_itself(defined):
    client, experiment = defined
    slot = experiment.transcripts.first()
    experiment.transcripts.filter(pk=slot.pk).update(status="done", served_model="stub-2024-01-01",
                                                     system_fingerprint="fp_123")
    body = client.get(f"/api/transcripts/{slot.pk}/").json()
    assert (body["endpoint"], body["endpoint_version"], body["model"]) == ("stub", 1, "stub")
    assert (body["served_model"], body["system_fingerprint"]) == ("stub-2024-01-01", "fp_123")


def test_researchers_launch_cancel_resume_and_retry_through_the_api(defined):
    client, experiment = defined
    url = f"/api/experiments/{experiment.pk}"
    launched = client.post(f"{url}/launch/")
    assert launched.status_code == 200 and launched.json()["status"] == "running"
    assert launched.json()["affected"] > 0  # work messages sent
    cancelled = client.post(f"{url}/cancel/").json()
    assert (cancelled["status"], cancelled["affected"]) == ("cancelled", 12)
    assert experiment.transcripts.filter(status="cancelled").count() == 12
    resumed = client.post(f"{url}/resume/").json()
    assert resumed["status"] == "running" and experiment.transcripts.filter(status="pending").count() == 12
    failed = experiment.transcripts.first()
    experiment.transcripts.filter(pk=failed.pk).update(status="failed", error_kind="http_401", attempts=3)
    assert client.post(f"{url}/retry-failed/").status_code == 200
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error_kind) == ("pending", 0, "")
    assert client.get(f"{url}/launch/").status_code == 405


def test_auditors_and_anonymous_clients_cannot_define_or_act_on_experiments(defined, bob):
    _client, experiment = defined
    auditor = token_client(bob)
    assert auditor.post("/api/experiments/", {"spec": make_spec(name="by-bob")}, format="json").status_code == 403
    for action in ("launch", "cancel", "resume", "retry-failed"):
        url = f"/api/experiments/{experiment.pk}/{action}/"
        assert auditor.post(url).status_code == 403, action
        assert APIClient().post(url).status_code == 401, action
    experiment.refresh_from_db()
    assert experiment.status == "draft" and not Experiment.objects.filter(name="by-bob").exists()
    assert experiment.transcripts.filter(status="pending").count() == 12


def test_the_schema_validates_and_the_docs_are_served_offline(alice_client):
    # Signed in: the schema and docs are refused to anonymous visitors (tests/security/test_tokens.py).
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert {"/api/transcripts/", "/api/scores/", "/api/labels/", "/api/experiments/",
            "/api/experiments/{id}/launch/", "/api/experiments/{id}/retry-failed/"} <= set(schema["paths"])
    params = {p["name"] for p in schema["paths"]["/api/transcripts/"]["get"]["parameters"]}
    assert {"model", "k", "misaligned", "aligned_min", "q", "cursor"} <= params
    assert alice_client.get(reverse("api-schema")).status_code == 200
    docs = alice_client.get(reverse("api-docs"))
    html = docs.content.decode()
    assert docs.status_code == 200 and "<script>" not in html  # no inline script for the CSP to block
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    script = alice_client.get(reverse("api-docs") + "?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
