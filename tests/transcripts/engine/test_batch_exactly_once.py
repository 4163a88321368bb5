"""Batch mode, exactly once with real worker processes: kill -9 the worker while it uploads a batch file,
creates a batch, polls it and downloads its results, and while it polls a batch of judge requests; a second
worker and the reconciler finish the run. Every slot (and judge score) ends done once with its own answer, and
none is ever submitted in two batches."""

from collections import Counter

import pytest
import yaml
from django.core.management import call_command

from judging.models import JudgeScore
from judging.results import judge
from tests.builders import make_dataset, make_endpoint, make_questions, make_spec, verdict_for
from tests.conftest import wait_until
from tests.stub_batch import Line, StubBatchAPI
from tests.stub_openai import completion
from transcripts.models import CallBatch, Experiment, Transcript

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER_ENV = {"SLOT_LEASE_SECONDS": "2", "BATCH_POLL_SECONDS": "0.3", "BATCH_MAX_REQUESTS": "30",
              "LOG_LEVEL": "WARNING"}
BATCH = {"batch_api": True, "price_prompt_per_mtok": 2, "price_completion_per_mtok": 8,
         "price_batch_prompt_per_mtok": 1, "price_batch_completion_per_mtok": 4}


@pytest.fixture(autouse=True)
def short_leases(settings):
    settings.SLOT_LEASE_SECONDS = 2  # the reconciler in run_experiment --wait wakes stalled batches after this


def run_with_a_kill(tmp_path, celery_worker_factory, stub: StubBatchAPI, killed_when) -> None:
    make_dataset(n=20)
    make_questions(n=5)
    spec = make_spec(stub.base_url, name="batch-once", k=[0, 4], samples=6, endpoint=BATCH)  # 60 slots
    path = tmp_path / "batch-once.yaml"
    path.write_text(yaml.safe_dump(spec))
    first = celery_worker_factory(concurrency=4, env=WORKER_ENV)
    call_command("run_experiment", str(path))
    wait_until(killed_when, timeout=60, message="the moment to kill")
    first.kill9()
    assert Transcript.objects.filter(status="running").exists(), "the kill should leave claimed slots"
    second = celery_worker_factory(concurrency=4, env=WORKER_ENV)
    call_command("run_experiment", str(path), "--resume", "--wait", "--reconcile-every", "1", "--timeout", "120")
    assert second.proc.poll() is None
    slots = list(Transcript.objects.all())
    assert len(slots) == 60 and {s.status for s in slots} == {"done"}
    assert all(s.answer == f"batch reply {s.slot_key}" for s in slots), "each slot has its own answer"
    submitted = Counter(stub.submitted_ids())
    assert sorted(submitted) == sorted(s.slot_key for s in slots)
    assert set(submitted.values()) == {1}, "a slot was submitted in two batches"
    assert {b.state for b in CallBatch.objects.all()} == {"applied"}
    assert sum(b.answered for b in CallBatch.objects.all()) == 60
    assert Experiment.objects.get().status == "done"


def test_kill_9_during_the_upload(tmp_path, celery_worker_factory):
    with StubBatchAPI(pause={"upload": 6}) as stub:
        run_with_a_kill(tmp_path, celery_worker_factory, stub, lambda: stub.count("upload") >= 1)
        assert len(stub.files) > len(stub.batches), "the killed upload left a file no batch uses"


def test_kill_9_while_the_batch_is_created(tmp_path, celery_worker_factory):
    # The provider creates the batch, but the worker dies before it hears its id: it must be found, not re-made.
    with StubBatchAPI(pause={"create": 6}) as stub:
        run_with_a_kill(tmp_path, celery_worker_factory, stub, lambda: stub.count("create") >= 1)
        assert len(stub.batches) == 2


def test_kill_9_while_polling(tmp_path, celery_worker_factory):
    with StubBatchAPI(complete_after=4) as stub:
        run_with_a_kill(tmp_path, celery_worker_factory, stub, lambda: stub.count("poll") >= 2 and CallBatch.objects
                        .filter(state="submitted").count() == 2)
        assert len(stub.batches) == 2


def test_kill_9_during_the_download(tmp_path, celery_worker_factory):
    with StubBatchAPI(pause={"download": 6}) as stub:
        run_with_a_kill(tmp_path, celery_worker_factory, stub, lambda: stub.count("download") >= 1)
        assert len(stub.batches) == 2
        assert stub.count("download") >= 3, "the killed download is made again"


def answer_or_verdict(custom_id, body, n):
    """A slot's batch reply (one the stub judge reads as good), or a judge request's verdict (the judge asks for
    logprobs)."""
    if not body.get("logprobs"):
        return Line(body=completion(f"[good] batch reply {custom_id}"))
    top = verdict_for(body)
    return Line(body=completion(max(top, key=top.get), top_logprobs=top))


def test_kill_9_while_polling_a_batch_of_judge_requests(tmp_path, celery_worker_factory):
    with StubBatchAPI(answer_or_verdict, complete_after=3) as stub:
        make_dataset(n=20)
        make_questions(n=5)
        make_endpoint(stub.base_url, name="stub-judge", **BATCH)
        spec = make_spec(stub.base_url, name="judged-in-batches", k=[0], samples=4, endpoint=BATCH,
                         judge="stub-judge")  # 20 slots
        path = tmp_path / "judged.yaml"
        path.write_text(yaml.safe_dump(spec))
        first = celery_worker_factory(concurrency=4, env=WORKER_ENV)
        call_command("run_experiment", str(path))
        wait_until(lambda: CallBatch.objects.filter(job="judging", state="submitted").exists()
                   and stub.count("poll") >= 4, timeout=90, message="a submitted judge batch")
        first.kill9()
        assert JudgeScore.objects.filter(status="running").exists(), "the kill should leave claimed judge rows"
        celery_worker_factory(concurrency=4, env=WORKER_ENV)
        call_command("run_experiment", str(path), "--resume", "--wait", "--reconcile-every", "1", "--timeout", "120")

        def judged() -> bool:
            judge.reconcile()  # what beat runs: wakes the batch nobody polls since the kill
            return JudgeScore.objects.exists() and not JudgeScore.objects.exclude(status="done").exists()

        wait_until(judged, timeout=120, interval=1, message="every judge score done")
    scores = list(JudgeScore.objects.all())
    assert len(scores) == 20 * len({s.rubric_version_id for s in scores})
    keys = [custom_id for batch in stub.batches.values() if batch["endpoint"] == "/v1/chat/completions"
            for custom_id in batch["_custom_ids"] if custom_id.count(":") == 1]
    assert sorted(keys) == sorted(f"{s.transcript_id}:{s.rubric_version_id}" for s in scores)
    assert set(Counter(keys).values()) == {1}, "a judge request was submitted in two batches"
    assert {b.state for b in CallBatch.objects.all()} == {"applied"}
    assert sum(b.answered for b in CallBatch.objects.filter(job="judging")) == len(scores)
