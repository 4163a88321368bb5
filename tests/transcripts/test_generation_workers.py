"""Generation through real Celery worker processes against the stub: limits that must hold across workers."""

import threading

import pytest
from django.core.management import call_command
from django.db.models import Count

from tests.builders import make_dataset, make_endpoint, make_questions, make_spec
from tests.conftest import wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.experiments.actions import launch
from transcripts.experiments.planning import define_experiment
from transcripts.models import Transcript

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER_ENV = {"SLOT_LEASE_SECONDS": "5", "GENERATION_BACKOFF_SECONDS": "0.05"}


def test_max_concurrency_holds_across_two_workers(celery_worker_factory):
    with StubOpenAI(lambda r, n: Reply(body=completion(f"reply {n}"), delay=0.3)) as stub:
        make_dataset(n=10)
        make_questions(n=5)
        spec = make_spec(stub.base_url, k=[0, 2], samples=4, endpoint={"max_concurrency": 3})  # 40 slots
        experiment = define_experiment(spec)
        celery_worker_factory(env=WORKER_ENV, concurrency=8)
        celery_worker_factory(env=WORKER_ENV, concurrency=8)
        launch(experiment)
        # Each worker alone could run 8 at once; together 16. The endpoint allows 3.
        wait_until(lambda: experiment.transcripts.filter(status="done").count() == 40, timeout=90,
                   message="40 slots done")
    assert stub.max_in_flight == 3
    assert len(stub.requests) == 40


def test_one_worker_keeps_many_requests_in_flight(celery_worker_factory):
    twenty_open = threading.Event()

    def held_until_twenty_are_open(request, n):
        # Replies wait until 20 requests are open at once, so how fast a loaded CI machine ramps up cannot
        # decide the figure; a worker that caps itself lower never gets there. The wait stays under the
        # client's 5 s timeout: a request the client gave up on would still count as open here.
        if stub.in_flight >= 20:
            twenty_open.set()
        twenty_open.wait(timeout=4)
        return Reply(body=completion("ok"), delay=0.1)

    with StubOpenAI(held_until_twenty_are_open) as stub:
        make_dataset(n=10)
        make_questions(n=10)
        spec = make_spec(stub.base_url, k=[0], samples=4, endpoint={"max_concurrency": 20})  # 40 slots
        experiment = define_experiment(spec)
        celery_worker_factory(env=WORKER_ENV, concurrency=32)
        launch(experiment)
        wait_until(lambda: experiment.transcripts.filter(status="done").count() == 40, timeout=60,
                   message="40 slots done")
    assert twenty_open.is_set()
    assert stub.max_in_flight == 20  # and never more than the endpoint allows, though the worker has 32 threads


def test_run_experiment_wait_summarises_done_and_failed_by_reason(celery_worker_factory, tmp_path, capsys):
    context_error = {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}}

    def behaviour(request, n):
        # Questions 0 and 1 succeed, question 2 is "too long" for the server.
        if request["messages"][-1]["content"].startswith("Question 2"):
            return Reply(status=400, body=context_error)
        return Reply(body=completion("fine", prompt_tokens=100, completion_tokens=7))

    with StubOpenAI(behaviour) as stub:
        make_dataset(n=10)
        make_questions(n=3)
        make_endpoint(stub.base_url)  # as an admin would; the file names it
        path = tmp_path / "exp.yaml"
        path.write_text(
            "name: summary\nendpoints: [stub]\n"
            "datasets: [insecure]\nquestions: first_plot\nk: [0, 2]\nsamples: 2\nmax_tokens: 20\n"
        )
        celery_worker_factory(env=WORKER_ENV, concurrency=4)
        call_command("run_experiment", str(path), "--wait", "--reconcile-every", "2", "--timeout", "180")
        out = capsys.readouterr().out
    assert "Done: 8  ·  failed: 4" in out
    assert "failed (context_length): 4" in out
    assert "Tokens: 800 prompt, 56 completion" in out
    assert Transcript.objects.filter(status="failed", error_kind="context_length").count() == 4
    # Resuming runs it again as defined: nothing is generated twice.
    before = len(stub.requests)
    call_command("run_experiment", str(path), "--resume", "--wait", "--timeout", "180")
    assert len(stub.requests) == before


def test_a_warm_shutdown_stops_claiming_and_leaves_the_rest_pending(celery_worker_factory):
    with StubOpenAI(lambda r, n: Reply(body=completion("ok"), delay=0.2)) as stub:
        make_dataset(n=10)
        make_questions(n=10)
        spec = make_spec(stub.base_url, k=[0], samples=10, endpoint={"max_concurrency": 1})  # 100 slots, ~20 s
        experiment = define_experiment(spec)
        worker = celery_worker_factory(env=WORKER_ENV, concurrency=4)
        launch(experiment)
        wait_until(lambda: experiment.transcripts.filter(status="done").count() >= 3, timeout=60,
                   message="3 slots done")
        worker.proc.terminate()  # SIGTERM: Celery's warm shutdown waits for running tasks
        worker.proc.wait(10)
    counts = dict(experiment.transcripts.values_list("status").annotate(n=Count("pk")))
    assert counts.get("running", 0) == 0, "the slot in flight was recorded before exiting"
    assert counts["pending"] > 50, "the worker stopped claiming instead of draining the queue"
