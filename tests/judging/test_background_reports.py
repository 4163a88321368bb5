"""Reports computed in the background (judging.reports) with a real Celery worker on a real Redis broker: a page
never computes one in its request, shows "computing…" and polls until the worker's result is there, shows the
last result with its age while an update runs, asks for one task however many requests come at once, shows a
failure instead of polling forever, and is refreshed ahead of the next view when verdicts or labels arrive."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis
from django.test import Client
from django.urls import reverse

from judging import reports
from judging.annotation.labels_io import import_labels
from judging.models import JudgeScore
from judging.results import judge
from judging.verdicts import refresh_cache, set_active_versions
from tests.builders import (
    experiment_with,
    judged_transcripts,
    make_endpoint,
    make_queue,
    seeded_experiment,
    stub_judge,
    versions_on,
)
from tests.conftest import fresh_redis_url, in_threads, make_user, reports_computed_here, wait_until
from tests.stub_openai import StubOpenAI
from transcripts.models import Transcript

BASE = {"model_name": "m", "cot_mode": "off", "system_prompt_name": "default", "temperature": 1.0}


def misaligned(n: int) -> dict:
    """12 answers of one condition (4 questions × 3 samples), the first `n` misaligned."""
    return {(f"q{i // 3}", i % 3): i < n for i in range(12)}


def researcher_client() -> Client:
    client = Client()
    client.force_login(make_user("alice", "researcher"))
    return client


def state_of(html: str) -> str:
    return html.split('data-state="')[1].split('"')[0]


def rate_shown(html: str, condition) -> str:
    row = html[html.index(f'data-condition="{condition.pk}"'):]
    return row.split('<td class="num">')[4].split("<")[0]  # n, questions, then the rate


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_twenty_requests_ask_one_task_and_the_page_polls_until_the_workers_result_is_there(
        celery_worker_factory, redis_broker_url):
    experiment = seeded_experiment("polled", [({**BASE, "k": 0}, misaligned(3))])
    condition = experiment.conditions.get()
    url = reverse("experiment-statistics", args=[experiment.pk])
    client = researcher_client()

    def view() -> str:
        return client.get(url, headers={"HX-Request": "true"}).content.decode()

    pages = in_threads(*[view] * 20)
    # No worker yet: every request answered without computing, and the broker holds one task.
    assert len(pages) == 20 and {state_of(page) for page in pages} == {"computing"}
    assert all(f'hx-get="{url}"' in page and 'hx-trigger="load delay:2s"' in page for page in pages)
    assert "data-condition" not in pages[0]
    assert redis.Redis.from_url(redis_broker_url).llen("celery") == 1

    celery_worker_factory(concurrency=2)
    wait_until(lambda: 'data-state="ready"' in client.get(url).content.decode(), timeout=60,
               message="the worker's statistics")
    page = client.get(url).content.decode()
    assert rate_shown(page, condition) == "0.250" and "hx-trigger=\"load delay" not in page  # polling stops


@pytest.fixture(params=["database", "redis"])
def shared_cache(request, settings) -> dict:
    """The cache web and worker share: the default (a table of the test database), or Redis as in production
    (a database of its own per xdist worker, flushed). Returns the worker's environment for it."""
    if request.param == "database":
        return {}
    url = fresh_redis_url("cache")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    return {"CACHE_URL": url}


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_after_a_new_verdict_the_page_shows_the_old_result_with_its_age_then_the_new_one(celery_worker_factory,
                                                                                         shared_cache):
    experiment = seeded_experiment("updated", [({**BASE, "k": 0}, misaligned(3))])
    condition = experiment.conditions.get()
    url = reverse("experiment-statistics", args=[experiment.pk])
    client = researcher_client()
    celery_worker_factory(concurrency=2, env=shared_cache)
    client.get(url)
    wait_until(lambda: 'data-state="ready"' in client.get(url).content.decode(), timeout=60, message="statistics")

    # The judge now calls a fourth answer misaligned.
    transcript = Transcript.objects.filter(experiment=experiment, aligned=90.0).order_by("pk").first()
    JudgeScore.objects.filter(transcript=transcript, rubric_version__rubric__key="aligned").update(score=10.0)
    refresh_cache(experiment, [transcript.pk])
    stale = client.get(url).content.decode()  # this request is what asks for the update
    assert state_of(stale) == "updating" and "Computed" in stale and rate_shown(stale, condition) == "0.250"
    assert 'hx-trigger="load delay:2s"' in stale
    wait_until(lambda: 'data-state="ready"' in client.get(url).content.decode(), timeout=60, message="the update")
    assert rate_shown(client.get(url).content.decode(), condition) == "0.333"


def test_a_failing_computation_shows_its_error_and_is_not_asked_again_until_its_data_changes(
        alice_client, db, monkeypatch):
    experiment = seeded_experiment("failing", [({**BASE, "k": 0}, misaligned(3))])
    url = reverse("experiment-statistics", args=[experiment.pk])

    def fails(experiment: int) -> dict:
        raise ValueError("the model did not converge")

    monkeypatch.setitem(reports.REPORTS, "results-statistics", replace(reports.REPORTS["results-statistics"],
                                                                      compute=fails))
    with reports_computed_here() as sent:
        alice_client.get(url)  # the task runs here, as a worker would, and fails
    assert len(sent) == 1
    page = alice_client.get(url).content.decode()
    assert state_of(page) == "failed" and "ValueError: the model did not converge" in page
    assert "hx-trigger" not in page.split('class="statistics-paired-loader"')[0]  # no polling forever
    with reports_computed_here() as sent:
        assert state_of(alice_client.get(url).content.decode()) == "failed"
    assert not sent  # and no second task
    # New data: it is tried again.
    transcript = experiment.transcripts.order_by("pk").last()
    JudgeScore.objects.filter(transcript=transcript, rubric_version__rubric__key="aligned").update(score=10.0)
    refresh_cache(experiment, [transcript.pk])
    monkeypatch.undo()
    with reports_computed_here() as sent:
        assert state_of(alice_client.get(url).content.decode()) == "computing"
    assert len(sent) == 1 and state_of(alice_client.get(url).content.decode()) == "ready"


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_new_verdicts_and_labels_refresh_the_reports_before_anyone_looks(celery_worker_factory, monkeypatch):
    monkeypatch.setattr(reports, "DEBOUNCE", 1)  # this process schedules the refreshes
    celery_worker_factory(concurrency=2)
    experiment = experiment_with({"m": ["[good]", "[evil]", "[good]"]}, name="warmed")
    with StubOpenAI(stub_judge) as stub:
        versions = versions_on(make_endpoint(stub.base_url))
        set_active_versions(experiment, **versions)
        judge.enqueue(experiment.transcripts.all(), list(versions.values()))  # judged by the worker
        # Each verdict, once committed, schedules the experiment's refresh: nobody opens a page.
        wait_until(lambda: reports.peek("results-statistics", experiment=experiment.pk).current
                   and not JudgeScore.objects.exclude(status=JudgeScore.Status.DONE).exists(), timeout=90,
                   message="the statistics computed ahead of a view")
    (_, rate), = reports.peek("results-statistics", experiment=experiment.pk).value["rates"]
    assert (rate.n, rate.count) == (3, 1)

    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    labelled, rows = judged_transcripts(2, name="labelled")
    queue = make_queue(labelled, auditors=[bob, carol])
    assert not reports.peek("queue-report", queue=queue.pk).has_value
    result = import_labels(queue=queue, by=None, lines=["transcript_id,annotator,label\n"] + [
        f"{t.pk},{who},follows_pattern\n" for t in rows for who in ("bob", "carol")])
    assert result.errors == []
    wait_until(lambda: reports.peek("queue-report", queue=queue.pk).current, timeout=60,
               message="the agreement report computed ahead of a view")
    assert reports.peek("queue-report", queue=queue.pk).value["stats"]["n_labels"] == 4
