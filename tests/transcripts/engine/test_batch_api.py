"""Batch mode of the call engine against a Batch API stub (tests/stub_batch.py), in this process: slots and
judge requests go as JSONL files through the real `openai` client; answers are applied by custom_id at the
batch prices, and a result line naming anything but the batch's own requests is ignored; error-file requests
and requests an expired batch did not run are retried in a later batch; a stopped run's rows given back leave
an open batch's alone."""

import json
from collections import Counter
from decimal import Decimal

import pytest
from django.urls import reverse

from judging.models import JudgeScore
from judging.results import judge
from tests.builders import make_dataset, make_endpoint, make_questions, make_spec, verdict_for, versions_on
from tests.stub_batch import Line, StubBatchAPI, answer_with_cache
from tests.stub_openai import completion
from transcripts import engine, generation
from transcripts.engine import batches
from transcripts.experiments.planning import define_experiment
from transcripts.models import CallBatch, Endpoint, Experiment

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = {"batch_api": True, "price_prompt_per_mtok": 2, "price_completion_per_mtok": 8,
         "price_cached_prompt_per_mtok": 1, "price_batch_prompt_per_mtok": 1, "price_batch_completion_per_mtok": 4,
         "price_batch_cached_prompt_per_mtok": "0.5"}


@pytest.fixture(autouse=True)
def fast(settings):
    settings.BATCH_POLL_SECONDS = 0.1
    settings.BATCH_MAX_REQUESTS = 8
    settings.GENERATION_MAX_ATTEMPTS = 3


def define(stub: StubBatchAPI, **overrides) -> Experiment:
    make_dataset(n=8)
    make_questions(n=3)
    experiment = define_experiment(make_spec(stub.base_url, endpoint=BATCH, k=[0, 2], samples=2, **overrides))
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    return experiment


def generate(experiment: Experiment) -> None:
    generation.work(experiment.conditions.first().endpoint_id, budget_seconds=60)
    experiment.refresh_from_db()


def test_slots_go_through_the_batch_api_at_batch_prices_with_cached_tokens(alice_client):
    with StubBatchAPI() as stub:
        experiment = define(stub)
        generate(experiment)
    slots = list(experiment.transcripts.all())
    assert len(slots) == 12 and {s.status for s in slots} == {"done"}
    for slot in slots:
        assert slot.answer == f"batch reply {slot.slot_key}"
        assert (slot.prompt_tokens, slot.cached_tokens, slot.completion_tokens) == (1000, 800, 50)
    assert experiment.status == "done"
    # 12 slots in batches of at most 8, each request once; no request was made directly.
    assert sorted(stub.submitted_ids()) == sorted(s.slot_key for s in slots)
    assert len(stub.batches) == 2 and not stub.direct_requests
    batches = list(CallBatch.objects.order_by("pk"))
    assert [(b.state, b.provider_status, b.requests, b.answered) for b in batches] == [
        ("applied", "completed", 8, 8), ("applied", "completed", 4, 4)]
    # Each slot: 200 prompt tokens at 1 + 800 cached at 0.5 + 50 completion at 4 = 800 µ$ (list price: 2,400).
    assert experiment.spent_usd == Decimal("0.0096")
    assert experiment.cache_saved_usd == 12 * Decimal("0.0004")  # 800 cached tokens at 1 instead of 0.5
    assert experiment.batch_saved_usd == 12 * Decimal("0.0012")  # list price less the batch price, uncached
    page = alice_client.get(reverse("experiment-progress", args=[experiment.pk])).content.decode()
    assert 'id="batches"' in page and "batch_1" in page and "completed" in page
    assert 'id="cache-hit-rate">80.0%' in page and 'id="batch-saved">$0.0144' in page


def test_a_partial_batch_completes_through_retries():
    seen: Counter = Counter()

    def partial(custom_id, body, n):
        seen[custom_id] += 1
        if custom_id.endswith(":0") and seen[custom_id] == 1:  # sample 0: a 500, then fine
            return Line(status=500, body={"error": {"message": "server overloaded", "type": "server_error"}})
        if custom_id.endswith(":1") and seen[custom_id] == 1 and n <= 8:  # sample 1 of the first batch: not run
            return Line(missing=True)
        return answer_with_cache(custom_id, body, n)

    with StubBatchAPI(partial) as stub:
        experiment = define(stub)
        generate(experiment)
    slots = list(experiment.transcripts.all())
    assert {s.status for s in slots} == {"done"}
    assert all(s.answer == f"batch reply {s.slot_key}" for s in slots)
    submitted = Counter(stub.submitted_ids())
    assert all(submitted[s.slot_key] == seen[s.slot_key] for s in slots), "a request is sent again only when retried"
    assert any(n == 2 for n in submitted.values())
    statuses = {b.provider_status for b in CallBatch.objects.all()}
    assert "expired" in statuses
    assert sum(b.requeued for b in CallBatch.objects.all()) == sum(n - 1 for n in submitted.values())


def test_a_terminal_error_fails_its_row_with_the_reason():
    def refuse_one(custom_id, body, n):
        if custom_id.endswith(":0"):
            return Line(status=400, body={"error": {"message": "maximum context length exceeded", "code": "x"}})
        return answer_with_cache(custom_id, body, n)

    with StubBatchAPI(refuse_one) as stub:
        experiment = define(stub)
        generate(experiment)
    failed = experiment.transcripts.filter(status="failed")
    assert failed.count() == 6 and {s.error_kind for s in failed} == {"context_length"}
    assert experiment.transcripts.filter(status="done").count() == 6
    assert Counter(stub.submitted_ids()).most_common(1)[0][1] == 1, "terminal errors are not retried"


def test_judge_requests_go_through_a_batch_endpoint():
    make_dataset(n=8)
    make_questions(n=3)
    with StubBatchAPI(lambda cid, body, n: Line(body=completion("[good] fine"))) as stub:
        experiment = define_experiment(make_spec(stub.base_url, endpoint=BATCH, k=[0], samples=2))
        Experiment.objects.filter(pk=experiment.pk).update(status="running")
        generate(experiment)

    def verdicts(custom_id, body, n):
        top = verdict_for(body)
        return Line(body=completion(max(top, key=top.get), top_logprobs=top, cached_tokens=3))

    with StubBatchAPI(verdicts) as stub:
        endpoint = make_endpoint(stub.base_url, name="stub-judge", **BATCH)
        versions = versions_on(endpoint)
        judge.enqueue(experiment.transcripts.all(), [versions["aligned"], versions["coherent"]])
        judge.work(endpoint.pk, budget_seconds=60)
    scores = list(JudgeScore.objects.all())
    assert len(scores) == 12 and {(s.status, s.method, s.cached_tokens) for s in scores} == {
        ("done", "single_token", 3)}
    assert {s.score for s in scores if s.rubric_version == versions["aligned"]} == {90.0}
    assert sorted(stub.submitted_ids()) == sorted(f"{s.transcript_id}:{s.rubric_version_id}" for s in scores)
    assert all(line["body"]["logprobs"] for batch in stub.batches.values() for line in batch["_lines"])
    assert not stub.direct_requests
    assert CallBatch.objects.filter(job="judging").count() == 2


def test_a_step_the_provider_fails_is_tried_again_and_a_missing_key_fails_the_rows(settings, monkeypatch):
    with StubBatchAPI(fail={"upload": 500, "create": 503}) as stub:
        experiment = define(stub)
        generate(experiment)
    assert {s.status for s in experiment.transcripts.all()} == {"done"}
    assert stub.count("failed upload") == stub.count("failed create") == 1
    assert len(stub.batches) == 2 and sorted(Counter(stub.submitted_ids()).values()) == [1] * 12

    settings.ENDPOINT_KEY_VARIABLES = ["STUB_BATCH_KEY"]
    monkeypatch.delenv("STUB_BATCH_KEY", raising=False)
    with StubBatchAPI() as stub:
        keyed = define_experiment(make_spec(stub.base_url, name="keyed", k=[0], samples=1,
                                            endpoint={**BATCH, "api_key_env": "STUB_BATCH_KEY"}))
        Experiment.objects.filter(pk=keyed.pk).update(status="running")
        generate(keyed)
    assert {(s.status, s.error_kind) for s in keyed.transcripts.all()} == {("failed", "missing_api_key")}
    assert not stub.files


def forged(stub: StubBatchAPI):
    """Lines added to each batch's output file: a request not ours, every request of the other batches (answered
    already, or held by another claim), a second answer to the batch's own first request, and lines that are not
    results at all."""
    def forge(batch):
        others = [cid for b in stub.batches.values() if b["id"] != batch["id"] for cid in b["_custom_ids"]]
        lines = [json.dumps({"custom_id": cid, "error": None, "response": {
            "status_code": 200, "body": completion("forged", prompt_tokens=10**6, completion_tokens=10**6)}}).encode()
            for cid in ["not-ours", *others, batch["_custom_ids"][0]]]
        return [*lines, b"{not json", b'{"custom_id": ["a"], "response": null}', b"[1, 2]"]

    return forge


def test_a_forged_or_unknown_result_line_is_ignored_and_never_written(settings):
    settings.BATCH_MAX_REQUESTS = 4  # three batches of four, open together
    stub = StubBatchAPI()
    stub.forge = forged(stub)
    with stub:
        experiment = define(stub)
        generate(experiment)
    slots = list(experiment.transcripts.all())
    assert {s.status for s in slots} == {"done"}
    assert all(s.answer == f"batch reply {s.slot_key}" for s in slots), "only the batch's own first line counts"
    assert len(stub.batches) == 3 and sorted(Counter(stub.submitted_ids()).values()) == [1] * 12
    assert experiment.spent_usd == Decimal("0.0096"), "each slot charged once, for its own reply"
    assert sum(b.answered for b in CallBatch.objects.all()) == 12


def test_giving_back_a_stopped_runs_rows_leaves_those_of_an_open_batch_to_it():
    """release_all (the embedded default's start) returns a stopped run's claimed rows to the line, but a
    submitted batch's rows are the provider's: given back, they would go out again in a second batch."""
    with StubBatchAPI(complete_after=1.0) as stub:
        experiment = define(stub)
        endpoint = Endpoint.objects.get(pk=experiment.conditions.first().endpoint_id)
        batch = batches.claim_batch(generation.GENERATION, endpoint)
        batches.advance(generation.GENERATION, endpoint, batch.pk)
        assert CallBatch.objects.get(pk=batch.pk).state == "submitted"
        held = set(experiment.transcripts.filter(status="running").values_list("pk", "claim_token"))
        assert len(held) == 8
        assert engine.release_all(generation.GENERATION) == 0
        assert set(experiment.transcripts.filter(status="running").values_list("pk", "claim_token")) == held
        generate(experiment)
    assert {s.status for s in experiment.transcripts.all()} == {"done"}
    assert sorted(Counter(stub.submitted_ids()).values()) == [1] * 12
