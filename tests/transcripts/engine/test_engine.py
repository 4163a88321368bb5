"""The call engine's guarantees that neither job owns: which credentials and hosts a request may use, what
an answer records about where it came from, token-rate pacing and budgets. Generation is the job under test
here (judging runs through the same functions: tests/judging/results/test_judge_tasks.py)."""

import time
import uuid
from decimal import Decimal

import pytest
from celery.worker import state as worker_state

from tests.builders import make_dataset, make_questions, make_spec
from tests.conftest import in_threads
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import engine, generation
from transcripts.experiments.planning import define_experiment
from transcripts.models import Endpoint, Experiment, Transcript

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_retries")]


def running_experiment(base_url: str, *, questions: int = 1, endpoint: dict | None = None) -> Experiment:
    make_dataset(n=8)
    make_questions(n=questions)
    experiment = define_experiment(make_spec(base_url, endpoint=endpoint, k=[2], samples=1))
    experiment.status = Experiment.Status.RUNNING
    experiment.save()
    return experiment


def generate(experiment: Experiment) -> list[Transcript]:
    for endpoint_id in experiment.conditions.values_list("endpoint_id", flat=True).distinct():
        generation.work(endpoint_id)
    return list(experiment.transcripts.order_by("dispatch_order"))


def test_an_endpoint_row_naming_an_undeclared_variable_sends_nothing(settings, monkeypatch):
    """Even a row that got past validation (written before the rule, or straight into the database) cannot make
    a worker send the server's own configuration as a Bearer token."""
    monkeypatch.setenv("DATABASE_URL", "postgres://secret-password@db/em")
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"OPENAI_API_KEY"})
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url)
        Endpoint.objects.filter(name="stub").update(api_key_env="DATABASE_URL")
        (slot,) = generate(experiment)
    assert (slot.status, slot.error_kind) == ("failed", "undeclared_key_variable")
    assert stub.requests == [] and "ENDPOINT_KEY_VARIABLES" in slot.error


def test_a_variable_no_longer_declared_is_not_read(settings, monkeypatch):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"EM_TEST_KEY"})
    monkeypatch.setenv("EM_TEST_KEY", "sk-test-123")
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url, endpoint={"api_key_env": "EM_TEST_KEY"})
        settings.ENDPOINT_KEY_VARIABLES = frozenset()  # the operator withdrew it
        (slot,) = generate(experiment)
    assert (slot.status, slot.error_kind, stub.requests) == ("failed", "undeclared_key_variable", [])


def test_redirects_are_not_followed(settings, monkeypatch):
    """A server that redirects must not get our request (and key) re-sent to the host it names."""
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"EM_TEST_KEY"})
    monkeypatch.setenv("EM_TEST_KEY", "sk-test-123")
    with StubOpenAI() as elsewhere:
        target = f"{elsewhere.base_url}/chat/completions"
        with StubOpenAI(lambda r, n: Reply(status=307, headers={"Location": target}, body={})) as redirecting:
            experiment = running_experiment(redirecting.base_url, endpoint={"api_key_env": "EM_TEST_KEY"})
            (slot,) = generate(experiment)
    assert (slot.status, slot.error_kind) == ("failed", "redirect_refused")
    assert len(redirecting.requests) == 1 and elsewhere.requests == []


def test_an_answer_records_the_served_model_fingerprint_and_endpoint_version():
    def behaviour(request, n):
        body = completion("hi", prompt_tokens=120, completion_tokens=7)
        body.update(model="stub-2026-11-01", system_fingerprint="fp_abc123")
        return Reply(body=body)

    with StubOpenAI(behaviour) as stub:
        experiment = running_experiment(stub.base_url)
        (slot,) = generate(experiment)
    assert (slot.served_model, slot.system_fingerprint) == ("stub-2026-11-01", "fp_abc123")
    assert (slot.prompt_tokens, slot.completion_tokens) == (120, 7)
    assert slot.condition.endpoint.version == 1


def test_tokens_per_minute_spaces_requests_by_their_estimated_size():
    times: list[float] = []

    def behaviour(request, n):
        times.append(time.monotonic())
        return Reply(body=completion("ok"))

    with StubOpenAI(behaviour) as stub:
        experiment = running_experiment(stub.base_url, questions=4, endpoint={"tokens_per_minute": 6000})
        request = {"messages": generation.slot_messages(experiment.transcripts.first()),
                   "max_tokens": experiment.max_tokens}
        spacing = engine.estimated_tokens(request) * 60 / 6000
        slots = generate(experiment)
    assert [s.status for s in slots] == ["done"] * 4
    assert spacing > 0.2
    # The first request also pays for creating the client and connecting: measure from the second.
    assert times[-1] - times[1] >= 2 * spacing - 0.05


def test_a_budget_stops_handing_out_work_and_says_why():
    with StubOpenAI(lambda r, n: Reply(body=completion("ok", prompt_tokens=1_000_000, completion_tokens=0))) as stub:
        experiment = running_experiment(
            # One place: with more, requests already in flight when the budget is reached finish too.
            stub.base_url, questions=5, endpoint={"price_prompt_per_mtok": Decimal("1.00"), "max_concurrency": 1}
        )
        Experiment.objects.filter(pk=experiment.pk).update(budget_usd=Decimal("2.00"))
        slots = generate(experiment)
    experiment.refresh_from_db()
    assert [s.status for s in slots] == ["done", "done", "cancelled", "cancelled", "cancelled"]
    assert len(stub.requests) == 2 and experiment.spent_usd == Decimal("2.00")
    assert experiment.status == "cancelled" and "Budget of $2.00 reached" in experiment.stop_reason


def test_a_restarted_embedded_run_hands_out_what_the_stopped_one_held_at_once():
    """One-at-a-time local server: without release_all the next claim would wait for the dead claim's lease."""
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url, questions=2, endpoint={"max_concurrency": 1})
        endpoint_id = experiment.conditions.get().endpoint_id
        held = generation.claim_next(endpoint_id)  # the run that was stopped held this one
        assert generation.claim_next(endpoint_id) is None
        assert engine.release_all(generation.GENERATION) == 1
        again = generation.claim_next(endpoint_id)
    assert again is not None and again.row_id == held.row_id and again.token != held.token


def test_a_row_claimed_as_the_worker_begins_to_stop_goes_back_and_the_worker_stops(monkeypatch):
    """The stop can come between a claim and its row's first step: the row must go back unsent and the driver
    end, or a warm shutdown waits for ever (a task cancelled before it first ran never runs its own code)."""
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url)
        claim = generation.claim_next(experiment.conditions.get().endpoint_id)
        monkeypatch.setattr(worker_state, "should_stop", 0)  # what a worker's SIGTERM sets: a warm shutdown
        in_threads(lambda: generation.run_claim(claim), timeout=20)
    slot = Transcript.objects.get(pk=claim.row_id)
    assert stub.requests == []
    assert (slot.status, slot.claim_token, slot.lease_until) == ("pending", None, None)


def test_a_slow_recording_does_not_hold_the_next_request(monkeypatch):
    """Claiming and recording overlap: an answer frees its place at once and the next request starts while
    that answer is still being written (a one-place server, each recording taking 0.6 s). The place stays
    one: the stub never sees two requests at once."""
    record_step = engine.driver.record_step

    def slow_record_step(*args):
        time.sleep(0.6)
        return record_step(*args)

    monkeypatch.setattr(engine.driver, "record_step", slow_record_step)
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url, questions=4, endpoint={"max_concurrency": 1})
        slots = generate(experiment)
    assert [s.status for s in slots] == ["done"] * 4
    assert stub.max_in_flight == 1
    gaps = [later - earlier for earlier, later in zip(stub.times, stub.times[1:], strict=False)]
    assert max(gaps) < 0.4, f"seconds between requests: {gaps}"


def test_a_recording_that_fails_fails_the_work_message_instead_of_hanging_it(monkeypatch):
    """A recording that raises (a bug, not a lost database) ends the work message with that error: the answered
    rows keep their lease for the reconciler, and the worker's thread is not held forever."""

    def broken_record_step(*args):
        raise TypeError("a value the recorder cannot write")

    monkeypatch.setattr(engine.driver, "record_step", broken_record_step)
    with StubOpenAI() as stub:
        experiment = running_experiment(stub.base_url, questions=2)
        started = time.monotonic()
        with pytest.raises(TypeError, match="cannot write"):
            generate(experiment)
    assert time.monotonic() - started < 10
    assert set(experiment.transcripts.values_list("status", flat=True)) == {"running"}


def test_a_claim_counts_the_places_of_answers_not_yet_recorded_as_free():
    """The claim is told which of the driver's claims are answered: their places count as free, and only
    while the row still carries that claim (a row claimed again by someone else is in flight again)."""
    experiment = running_experiment("http://127.0.0.1:9/v1", questions=3, endpoint={"max_concurrency": 2})
    endpoint = experiment.conditions.get().endpoint
    job = generation.GENERATION
    first = engine.claims.claim_step(job, endpoint, 2, []).rows
    assert len(first) == 2
    assert engine.claims.claim_step(job, endpoint, 1, []).rows == []  # both places taken
    stale = [(first[0].pk, uuid.UUID(int=0))]  # the right row, another claim
    assert engine.claims.claim_step(job, endpoint, 1, stale).rows == []
    answered = [(first[0].pk, first[0].claim_token)]
    again = engine.claims.claim_step(job, endpoint, 2, answered).rows
    assert len(again) == 1 and again[0].pk not in {row.pk for row in first}
