"""Exactly-once judging with real worker processes: kill -9 the worker in the middle of judging. Every judge
score must end done, written once, from the one request that asked about its transcript."""

import pytest

from judging.models import JudgeScore
from judging.results import judge
from judging.verdicts import set_active_versions
from tests.builders import experiment_with, make_endpoint, versions_on
from tests.conftest import wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Transcript

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER_ENV = {"SLOT_LEASE_SECONDS": "2", "GENERATION_BACKOFF_SECONDS": "0.05", "LOG_LEVEL": "WARNING"}
ANSWERS = 120  # × aligned and coherent = 240 judge rows


def numbered_verdict(request, n):
    # The reply names the request, so every stored verdict can be traced back to the one request it came from.
    return Reply(body=completion(f"verdict {n}", top_logprobs={"10": 0.0}), delay=0.15)


def done_count() -> int:
    return JudgeScore.objects.filter(status="done").count()


def test_every_score_is_written_once_across_a_kill_9_of_the_worker(celery_worker_factory):
    experiment = experiment_with({"m": [f"answer number {i}" for i in range(ANSWERS)]})
    with StubOpenAI(numbered_verdict) as stub:
        endpoint = make_endpoint(stub.base_url, max_concurrency=8, timeout_seconds=1)
        versions = versions_on(endpoint)
        set_active_versions(experiment, aligned=versions["aligned"], coherent=versions["coherent"], persona=None)
        first = celery_worker_factory(concurrency=8, env=WORKER_ENV)
        judge.enqueue(experiment.transcripts.all(), [versions["aligned"], versions["coherent"]])
        wait_until(lambda: done_count() >= 60, timeout=60, message="60 scores done")
        first.kill9()
        assert JudgeScore.objects.filter(status="running").exists(), "the kill should leave claimed rows"
        second = celery_worker_factory(concurrency=8, env=WORKER_ENV)
        # beat's job: return expired leases and re-dispatch what the dead worker held
        wait_until(lambda: judge.reconcile() and done_count() == 2 * ANSWERS, timeout=180, interval=1,
                   message="every score done")
        assert second.proc.poll() is None

    rows = list(JudgeScore.objects.select_related("transcript", "rubric_version__rubric"))
    assert len(rows) == 2 * ANSWERS and {r.status for r in rows} == {"done"}
    assert len({r.raw_text for r in rows}) == len(rows), "two scores share a reply: a verdict was written twice"
    for row in rows:
        request = stub.requests[int(row.raw_text.removeprefix("verdict ")) - 1]
        assert row.transcript.answer in request["messages"][-1]["content"]
    assert Transcript.objects.filter(aligned=10, coherent=10).count() == ANSWERS
