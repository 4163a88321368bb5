"""A hostile researcher cannot make the workers send the server's secrets anywhere: a spec that describes an
endpoint (a new base URL, an undeclared key variable such as DATABASE_URL or SECRET_KEY, or an existing
endpoint's name redefined) is refused at the form's confirm step and the API alike, nothing changes, and a
real worker never calls the attacker's server. An endpoint an admin made works end to end."""

from __future__ import annotations

import json
import os

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from judging.models import JudgeScore
from tests.builders import make_dataset, make_endpoint, make_questions, stub_judge
from tests.conftest import wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.experiments.spec import ADMINS_ONLY
from transcripts.models import Endpoint, Experiment

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

KEY = "sk-declared-test-key"
WORKER_ENV = {"SLOT_LEASE_SECONDS": "5", "GENERATION_BACKOFF_SECONDS": "0.05",
              "ENDPOINT_KEY_VARIABLES": "STUB_API_KEY", "STUB_API_KEY": KEY}


def hostile_specs(attacker: str) -> list[tuple[dict, str]]:
    """(what the researcher changes in a valid spec, the field the refusal names)."""
    return [
        # Redefine the admins' endpoint: same name, the attacker's server, the database URL as the "key".
        ({"endpoints": [{"name": "stub", "base_url": attacker, "model": "stub", "api_key_env": "DATABASE_URL"}]},
         "endpoints[0]"),
        ({"endpoints": [{"name": "exfil", "base_url": attacker, "model": "m", "api_key_env": "SECRET_KEY"}]},
         "endpoints[0]"),
        ({"endpoints": ["stub", {"name": "mine", "base_url": attacker, "model": "m"}]}, "endpoints[1]"),
        ({"judge": {"name": "stub", "base_url": attacker, "model": "m", "api_key_env": "DATABASE_URL"}}, "judge"),
    ]


def valid_spec(name: str) -> dict:
    return {"name": name, "endpoints": ["stub"], "judge": "stub", "datasets": ["insecure"],
            "questions": "first_plot", "k": [0], "samples": 1, "max_tokens": 20}


def judge_or_answer(request: dict, n: int) -> Reply:
    """The admins' server: generates an answer, and judges it like the stub judge of the judging tests."""
    if "[QUESTION START]" in request["messages"][-1]["content"]:  # every rubric template frames the question so
        return stub_judge(request, n)
    return Reply(body=completion("[good] Go for a walk."))


def snapshot() -> list[dict]:
    return [{f.name: getattr(e, f.name) for f in Endpoint._meta.fields} for e in Endpoint.objects.order_by("pk")]


def test_hostile_specs_are_refused_everywhere_and_an_admins_endpoint_works(
    celery_worker_factory, alice, alice_client, settings,
):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"STUB_API_KEY"})
    make_dataset(n=10)
    make_questions(n=2)
    with StubOpenAI(judge_or_answer) as server, StubOpenAI() as attacker:
        make_endpoint(server.base_url, api_key_env="STUB_API_KEY")
        before = snapshot()
        celery_worker_factory(env=WORKER_ENV, concurrency=8)
        browser = alice_client
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")

        for i, (changes, field) in enumerate(hostile_specs(attacker.base_url)):
            spec = {**valid_spec(f"attack-{i}"), **changes}
            page = browser.post(reverse("experiment-new"), {"confirm": "1", "spec": json.dumps(spec)})
            html = page.content.decode()
            assert page.status_code == 400 and f"Not launched: {field}: " in html, html[-3000:]
            assert "endpoints are created and changed by admins (Django admin or `manage.py load_endpoints`)" in html
            answer = api.post("/api/experiments/", {"spec": spec}, format="json")
            assert answer.status_code == 400 and answer.json() == {"spec": [f"{field}: {ADMINS_ONLY}"]}
        assert not Experiment.objects.exists()
        assert snapshot() == before  # the admins' endpoint: same versions, same fields

        # The admins' endpoint, chosen by name in the browser, generates and judges through a real worker.
        page = browser.post(reverse("experiment-new"), {"confirm": "1", "spec": json.dumps(valid_spec("fine"))})
        assert page.status_code == 302
        experiment = Experiment.objects.get(name="fine")
        wait_until(lambda: experiment.transcripts.filter(status="done").count() == 2, timeout=60,
                   message="2 slots generated")
        wait_until(lambda: JudgeScore.objects.filter(status="done").count() == 4, timeout=60,
                   message="aligned and coherent judged for both transcripts")

    assert attacker.requests == []
    assert len(server.requests) == 2 + 4
    assert {h.get("authorization") for h in server.headers} == {f"Bearer {KEY}"}
    everything_sent = json.dumps(server.headers + server.requests)
    for secret in (settings.SECRET_KEY, os.environ["DATABASE_URL"], settings.DATABASES["default"]["NAME"]):
        assert secret not in everything_sent
    assert snapshot() == before
