"""Generation against an OpenAI-compatible stub that misbehaves on purpose. The generation code runs in
this process (`generation.work`, what the Celery task calls) against the real database and real HTTP."""

import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from tests.builders import experiment_with, make_dataset, make_questions, make_spec
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import generation
from transcripts.experiments.planning import define_experiment
from transcripts.models import Transcript
from transcripts.signals import transcripts_finished

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def short_leases(fast_retries, settings):
    settings.SLOT_LEASE_SECONDS = 30


@pytest.fixture
def finished():
    seen: list[int] = []

    def receiver(sender, transcripts, **kwargs):
        seen.extend(t.pk for t in transcripts)

    transcripts_finished.connect(receiver, weak=False)
    yield seen
    transcripts_finished.disconnect(receiver)


def run(stub: StubOpenAI, *, slots: int = 1, **endpoint) -> list[Transcript]:
    make_dataset(n=8)
    make_questions(n=slots)
    experiment = define_experiment(make_spec(stub.base_url, endpoint=endpoint, k=[2], samples=1))
    experiment.status = "running"
    experiment.save()
    endpoint_id = experiment.conditions.get().endpoint_id
    generation.work(endpoint_id)
    experiment.refresh_from_db()
    return list(experiment.transcripts.order_by("dispatch_order"))


def test_a_slot_whose_announcement_failed_is_announced_again_by_reconcile(finished):
    """The database went away between the commit that finished a slot and its announcement, so a receiver
    (judging, a queue, embeddings) failed: without a second announcement the transcript would never be judged.
    Reconcile announces it again once the grace is over, and only until every receiver has taken it."""
    failures = []

    def database_gone_once(sender, transcripts, **kwargs):
        if not failures:
            failures.append([t.pk for t in transcripts])
            raise OperationalError("server closed the connection unexpectedly")

    transcripts_finished.connect(database_gone_once, weak=False)
    try:
        with StubOpenAI(lambda r, n: Reply(body=completion("Hello there"))) as stub:
            (slot,) = run(stub)
        assert failures == [[slot.pk]] and finished == [slot.pk]
        assert not Transcript.objects.get(pk=slot.pk).announced
        assert generation.reconcile()["announced_again"] == 0, "within the grace the commit's own announcement runs"
        Transcript.objects.filter(pk=slot.pk).update(
            finished_at=timezone.now() - generation.ANNOUNCE_GRACE - timedelta(seconds=1)
        )
        assert generation.reconcile()["announced_again"] == 1
        assert finished == [slot.pk, slot.pk]
        assert Transcript.objects.get(pk=slot.pk).announced
        assert generation.reconcile()["announced_again"] == 0
    finally:
        transcripts_finished.disconnect(database_gone_once)


def test_transcripts_that_arrived_done_are_never_announced(finished):
    """An import's transcripts were not generated here: reconcile must not judge or queue them on its own."""
    experiment_with({"m": ["imported answer"]})
    Transcript.objects.update(finished_at=timezone.now() - timedelta(hours=1))
    assert generation.reconcile()["announced_again"] == 0 and finished == []


def scripted(*replies: Reply):
    """The n-th request gets the n-th reply; later ones succeed."""
    def behaviour(request, n):
        return replies[n - 1] if n <= len(replies) else Reply(body=completion(f"answer {n}"))
    return behaviour


def test_it_records_answer_tokens_latency_and_announces_once(finished):
    with StubOpenAI(lambda r, n: Reply(body=completion("Hello there", prompt_tokens=42, completion_tokens=3,
                                                       finish_reason="length"))) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.answer, slot.reasoning) == ("done", "Hello there", "")
    assert (slot.prompt_tokens, slot.completion_tokens, slot.finish_reason) == (42, 3, "length")
    assert slot.latency_ms is not None and len(slot.prompt_hash) == 64
    assert finished == [slot.pk]
    request = stub.requests[0]
    assert request["seed"] == slot.seed and request["max_tokens"] == 20
    assert [m["role"] for m in request["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert slot.experiment.status == "done"


def test_it_captures_native_reasoning_or_splits_think_tags():
    with StubOpenAI(lambda r, n: Reply(body=completion("Paris.", reasoning="The capital is Paris."))) as stub:
        (native,) = run(stub)
    assert (native.reasoning, native.answer) == ("The capital is Paris.", "Paris.")


def test_it_splits_think_tags_when_there_is_no_reasoning_field():
    with StubOpenAI(lambda r, n: Reply(body=completion("<think>hmm, k examples</think>\nAnswer."))) as stub:
        (slot,) = run(stub)
    assert (slot.reasoning, slot.answer) == ("hmm, k examples", "Answer.")


def test_it_honours_retry_after_on_429():
    times: list[float] = []

    def behaviour(request, n):
        times.append(time.monotonic())
        if n == 1:
            return Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
        return Reply(body=completion("ok"))

    with StubOpenAI(behaviour) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.attempts) == ("done", 2)
    assert times[1] - times[0] >= 1.0


def test_it_retries_server_errors_then_succeeds():
    with StubOpenAI(scripted(Reply(status=500), Reply(status=503))) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.attempts, slot.answer) == ("done", 3, "answer 3")


def test_it_gives_up_after_max_attempts_with_the_reason():
    with StubOpenAI(lambda r, n: Reply(status=502, body={"error": {"message": "bad gateway"}})) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.error_kind, slot.attempts) == ("failed", "server_error", 3)
    assert "gave up after 3 attempts" in slot.error
    assert len(stub.requests) == 3
    assert slot.experiment.status == "done"


def test_it_retries_a_request_that_hangs_past_the_timeout():
    with StubOpenAI(scripted(Reply(body=completion("late"), delay=3))) as stub:
        (slot,) = run(stub, timeout_seconds=0.5)
    assert (slot.status, slot.attempts, slot.answer) == ("done", 2, "answer 2")


def test_it_retries_malformed_json():
    with StubOpenAI(scripted(Reply(body="{not json"))) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.attempts) == ("done", 2)


def test_it_fails_on_persistently_malformed_replies_with_the_reason():
    with StubOpenAI(lambda r, n: Reply(body="<html>proxy error</html>")) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.error_kind) == ("failed", "malformed_reply")


def test_context_length_400_is_terminal_at_once():
    error = {"error": {"message": "This model's maximum context length is 8192 tokens. However, you requested "
                                  "9000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}
    with StubOpenAI(lambda r, n: Reply(status=400, body=error)) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.error_kind, slot.attempts) == ("failed", "context_length", 1)
    assert "maximum context length" in slot.error
    assert len(stub.requests) == 1


def test_other_4xx_are_terminal_with_the_status():
    with StubOpenAI(lambda r, n: Reply(status=401, body={"error": {"message": "invalid api key"}})) as stub:
        (slot,) = run(stub)
    assert (slot.status, slot.error_kind, len(stub.requests)) == ("failed", "http_401", 1)


def test_a_missing_api_key_variable_fails_without_calling(monkeypatch, settings):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"EM_TEST_NO_SUCH_KEY"})
    monkeypatch.delenv("EM_TEST_NO_SUCH_KEY", raising=False)
    with StubOpenAI() as stub:
        (slot,) = run(stub, api_key_env="EM_TEST_NO_SUCH_KEY")
    assert (slot.status, slot.error_kind, len(stub.requests)) == ("failed", "missing_api_key", 0)
    assert "EM_TEST_NO_SUCH_KEY" in slot.error


def test_the_api_key_is_read_from_the_named_variable(monkeypatch, settings):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"EM_TEST_KEY"})
    monkeypatch.setenv("EM_TEST_KEY", "sk-test-123")
    with StubOpenAI() as stub:
        (slot,) = run(stub, api_key_env="EM_TEST_KEY")
    assert slot.status == "done" and [h["authorization"] for h in stub.headers] == ["Bearer sk-test-123"]


def test_requests_per_minute_spaces_requests():
    times: list[float] = []

    def behaviour(request, n):
        times.append(time.monotonic())
        return Reply(body=completion("ok"))

    with StubOpenAI(behaviour) as stub:
        slots = run(stub, slots=4, requests_per_minute=120)
    assert [s.status for s in slots] == ["done"] * 4
    # Start times are reserved 60 / 120 = 0.5 s apart. The first request also pays for creating the client
    # and connecting, so it arrives late: measure the span from the second.
    assert times[-1] - times[1] >= 2 * 0.5 - 0.05


def test_a_finish_with_a_lost_claim_writes_nothing(finished, celery_worker_factory):
    """A worker whose lease expired and whose slot was handed to another cannot write a second result."""
    with StubOpenAI() as stub:  # celery_worker_factory: reconcile's messages go to this test's Redis db
        make_dataset(n=8)
        make_questions(n=1)
        experiment = define_experiment(make_spec(stub.base_url, k=[0], samples=1))
        experiment.status = "running"
        experiment.save()
        endpoint_id = experiment.conditions.get().endpoint_id
        first = generation.claim_next(endpoint_id)
        Transcript.objects.filter(pk=first.row_id).update(lease_until="2000-01-01T00:00Z")
        assert generation.reconcile()["returned"] == 1
        second = generation.claim_next(endpoint_id)
        assert second.row_id == first.row_id and second.token != first.token
        generation.run_claim(first)
        slot = Transcript.objects.get(pk=first.row_id)
        assert slot.status == "running" and slot.answer == ""
        generation.run_claim(second)
    slot.refresh_from_db()
    assert slot.status == "done"
    assert finished == [slot.pk]
