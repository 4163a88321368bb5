"""Exactly-once generation with real worker processes: kill -9 a worker mid-run (Redis and the embedded
filesystem broker), and crash and restart Redis mid-run (a private redis-server, so the machine's shared
one, used by the other test process, stays up). Every slot must end done, once, with its own reply."""

import time
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from em_site.broker import serverless_options
from tests.builders import make_dataset, make_questions, make_spec
from tests.conftest import point_app_at, wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Experiment, Transcript

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER_ENV = {"SLOT_LEASE_SECONDS": "2", "GENERATION_BACKOFF_SECONDS": "0.05", "LOG_LEVEL": "WARNING"}


def answer_each_request(request, n):
    # The reply names the request, so every stored answer can be traced back to the one request it came from.
    return Reply(body=completion(f"reply {n}"), delay=0.15)


def experiment_file(tmp_path: Path, stub: StubOpenAI) -> Path:
    make_dataset(n=20)
    make_questions(n=10)
    spec = make_spec(  # 2 × 10 × 10 = 200 slots
        stub.base_url, name="exactly-once", k=[0, 4], samples=10, endpoint={"max_concurrency": 8, "timeout_seconds": 1}
    )
    path = tmp_path / "exactly-once.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def assert_each_slot_done_once(stub: StubOpenAI) -> None:
    slots = list(Transcript.objects.select_related("question"))
    assert len(slots) == 200
    assert {s.status for s in slots} == {"done"}
    answers = [s.answer for s in slots]
    assert len(set(answers)) == 200, "two slots share a reply: a result was written twice"
    for slot in slots:
        request = stub.requests[int(slot.answer.removeprefix("reply ")) - 1]
        assert request["seed"] == slot.seed
        assert request["messages"][-1]["content"] in slot.question.paraphrases
    assert Experiment.objects.get().status == "done"


def done_count() -> int:
    return Transcript.objects.filter(status="done").count()


def run_with_a_kill(tmp_path, celery_worker_factory, **worker_kwargs) -> None:
    worker_kwargs.setdefault("env", WORKER_ENV)
    with StubOpenAI(answer_each_request) as stub:
        path = experiment_file(tmp_path, stub)
        first = celery_worker_factory(concurrency=8, **worker_kwargs)
        call_command("run_experiment", str(path))
        wait_until(lambda: done_count() >= 50, timeout=60, message="50 slots done")
        first.kill9()
        assert Transcript.objects.filter(status="running").exists(), "the kill should leave claimed slots"
        assert done_count() < 200
        second = celery_worker_factory(concurrency=8, **worker_kwargs)
        time.sleep(2)
        assert second.proc.poll() is None, f"the replacement worker exited with code {second.proc.returncode}"
        # --resume runs it again as defined; --wait reconciles (expired leases, lost messages) until all are done.
        call_command("run_experiment", str(path), "--resume", "--wait", "--reconcile-every", "1", "--timeout", "180")
        assert_each_slot_done_once(stub)


def test_it_survives_kill_9_of_the_worker_on_redis(tmp_path, celery_worker_factory):
    run_with_a_kill(tmp_path, celery_worker_factory)


def test_it_survives_kill_9_of_the_worker_on_the_filesystem_broker(tmp_path, celery_worker_factory):
    point_app_at("filesystem://", serverless_options(tmp_path / "broker"))
    env = {**WORKER_ENV, "EM_VAR_DIR": str(tmp_path)}  # the worker's settings put the broker under var/broker
    run_with_a_kill(tmp_path, celery_worker_factory, broker_url="filesystem://", env=env)


def test_it_survives_a_redis_crash_and_restart(tmp_path, private_redis, celery_worker_factory):
    point_app_at(private_redis.url)
    with StubOpenAI(answer_each_request) as stub:
        path = experiment_file(tmp_path, stub)
        worker = celery_worker_factory(env=WORKER_ENV, concurrency=8, broker_url=private_redis.url)
        call_command("run_experiment", str(path))
        wait_until(lambda: done_count() >= 40, timeout=60, message="40 slots done")
        private_redis.kill9()
        time.sleep(1)
        assert done_count() < 200
        private_redis.start()
        # Every queued and unacknowledged message died with Redis (no persistence): the reconciler in
        # --wait must bring the rest of the run back through the same, reconnected worker.
        call_command("run_experiment", str(path), "--resume", "--wait", "--reconcile-every", "1", "--timeout", "180")
        assert worker.proc.poll() is None, "the worker should reconnect, not die"
        assert_each_slot_done_once(stub)
