"""A batch stays within the provider's limits (transcripts/engine/batch_files.py), against the Batch API stub
(tests/stub_batch.py): a file never passes BATCH_MAX_FILE_BYTES, the batches open at once never hold more
than the account's queue of enqueued tokens (shared by the account's endpoints), and a request no batch can
hold fails with the reason instead of being sent; an experiment's budget counts what its open batches may cost
before they are billed."""

import json
from collections import Counter
from decimal import Decimal

import pytest

from tests.builders import make_dataset, make_endpoint, make_questions, make_spec
from tests.stub_batch import StubBatchAPI
from transcripts import generation
from transcripts.engine.batch_files import queued_tokens
from transcripts.experiments.planning import define_experiment
from transcripts.models import CallBatch, Experiment

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = {"batch_api": True, "price_prompt_per_mtok": 2, "price_completion_per_mtok": 8,
         "price_batch_prompt_per_mtok": 1, "price_batch_completion_per_mtok": 4}


@pytest.fixture(autouse=True)
def fast(settings):
    settings.BATCH_POLL_SECONDS = 0.1
    settings.BATCH_MAX_REQUESTS = 1000  # far above what the other limits let through


def run(stub: StubBatchAPI, endpoint: dict | None = None) -> Experiment:
    """12 slots (3 questions, k = 0 and 8, 2 samples) on a batch endpoint, generated to the end."""
    make_dataset(n=8)
    make_questions(n=3)
    experiment = define_experiment(make_spec(stub.base_url, endpoint={**BATCH, **(endpoint or {})}, k=[0, 8],
                                             samples=2))
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    generation.work(experiment.conditions.first().endpoint_id, budget_seconds=60)
    experiment.refresh_from_db()
    return experiment


def files(stub: StubBatchAPI) -> list[list[bytes]]:
    """Each created batch's input file, as its lines."""
    return [stub.files[batch["input_file_id"]].splitlines() for batch in stub.batches.values()]


def tokens_of(stub: StubBatchAPI) -> dict[str, int]:
    """Each submitted request's estimated prompt tokens, by custom_id."""
    return {record["custom_id"]: queued_tokens(record["body"])
            for lines in files(stub) for record in map(json.loads, lines)}


def test_a_batch_file_is_cut_at_the_bytes_limit(settings):
    settings.BATCH_MAX_FILE_BYTES = 4_000  # a k = 8 request is ~1.6 kB, a k = 0 one ~0.3 kB: a few to a file
    with StubBatchAPI() as stub:
        experiment = run(stub)
    assert {s.status for s in experiment.transcripts.all()} == {"done"}
    assert sorted(Counter(stub.submitted_ids()).values()) == [1] * 12
    sizes = [len(b"\n".join(lines)) for lines in files(stub)]
    assert len(sizes) >= 3 and max(sizes) <= 4_000
    # Each file but the last was full: its next request would have taken it past the limit.
    for lines, following in zip(files(stub), files(stub)[1:], strict=False):
        assert len(b"\n".join(lines)) + 1 + len(following[0]) > 4_000


def test_open_batches_never_hold_more_than_the_accounts_queue(settings):
    settings.BATCH_MAX_REQUESTS = 2  # a k = 8 request is ~230 tokens: two batches of two fit the queue at once
    with StubBatchAPI(complete_after=2) as stub:
        experiment = run(stub, {"batch_queue_tokens": 1_000})
    assert {s.status for s in experiment.transcripts.all()} == {"done"}
    assert sorted(Counter(stub.submitted_ids()).values()) == [1] * 12
    tokens = tokens_of(stub)
    assert sum(tokens.values()) > 1_000, "the queue should bind"
    held = [sum(tokens[custom_id] for custom_id in ids) for ids in stub.open_ids]
    assert max(held) <= 1_000
    assert any(len(ids) > 2 for ids in stub.open_ids), "batches that fit together are open together"
    assert {b.tokens for b in CallBatch.objects.all()} == {sum(tokens[c] for c in b["_custom_ids"])
                                                           for b in stub.batches.values()}


def test_a_request_no_batch_can_hold_fails_with_the_reason(settings):
    # k = 0 requests are ~0.3 kB, k = 8 ones ~1.5 kB: a 1 kB file holds a k = 0 request, never a k = 8 one.
    settings.BATCH_MAX_FILE_BYTES = 1_000
    with StubBatchAPI() as stub:
        experiment = run(stub)
    done = experiment.transcripts.filter(status="done")
    failed = experiment.transcripts.filter(status="failed")
    assert {s.condition.k for s in done} == {0} and done.count() == 6
    assert {s.condition.k for s in failed} == {8} and failed.count() == 6
    assert {s.error_kind for s in failed} == {"batch_too_large"}
    assert all("BATCH_MAX_FILE_BYTES" in s.error for s in failed)
    assert sorted(stub.submitted_ids()) == sorted(s.slot_key for s in done), "no file held a k = 8 request"


def test_the_accounts_queue_is_shared_by_its_endpoints(settings):
    """Another endpoint of the same account (server, key and model) holds the whole queue in an open batch:
    nothing is sent until that batch is applied."""
    with StubBatchAPI() as stub:
        make_dataset(n=8)
        make_questions(n=3)
        other = make_endpoint(stub.base_url, name="same-account", **BATCH, batch_queue_tokens=1_000)
        held = CallBatch.objects.create(job="generation", endpoint=other, claim_token="0" * 32, state="submitted",
                                        tokens=1_000, batch_id="batch_elsewhere")
        experiment = define_experiment(make_spec(stub.base_url, endpoint={**BATCH, "batch_queue_tokens": 1_000},
                                                 k=[0], samples=2))
        Experiment.objects.filter(pk=experiment.pk).update(status="running")
        endpoint_id = experiment.conditions.get().endpoint_id
        generation.work(endpoint_id, budget_seconds=1)
        assert not stub.seen and experiment.transcripts.filter(status="pending").count() == 6
        CallBatch.objects.filter(pk=held.pk).update(state="applied")
        generation.work(endpoint_id, budget_seconds=60)
    assert {s.status for s in experiment.transcripts.all()} == {"done"}
    assert sorted(Counter(stub.submitted_ids()).values()) == [1] * 6


def test_open_batches_count_against_the_budget_before_they_are_billed(settings):
    """Without counting what open batches may cost, every batch would be claimed before the first is billed (the
    whole study sent on a budget meant for a few requests)."""
    settings.BATCH_MAX_REQUESTS = 4  # three batches, claimed together but for the budget
    with StubBatchAPI() as stub:
        make_dataset(n=8)
        make_questions(n=3)
        experiment = define_experiment(make_spec(stub.base_url, endpoint=BATCH, k=[0, 8], samples=2))
        # k = 0 requests may cost ~0.09 m$ at the batch prices (~6 prompt tokens at $1/M, 20 answer tokens at $4/M).
        Experiment.objects.filter(pk=experiment.pk).update(status="running", budget_usd="0.0003")
        generation.work(experiment.conditions.first().endpoint_id, budget_seconds=60)
    experiment.refresh_from_db()
    (batch,) = CallBatch.objects.all()
    assert len(stub.batches) == 1 and batch.requests == len(stub.submitted_ids()) == 3
    assert sum(Decimal(c) for c in batch.estimated_usd.values()) <= Decimal("0.0003")
    # Billed: 3 × (1,000 prompt tokens, 800 cached, 50 answer tokens) = 2.4 m$, past the budget: stopped.
    assert experiment.status == "cancelled" and experiment.stop_reason.startswith("Budget of $0.00 reached")
    assert Counter(experiment.transcripts.values_list("status", flat=True)) == {"done": 3, "cancelled": 9}


def test_a_budget_too_small_for_the_next_batch_request_stops_the_experiment_and_says_why():
    with StubBatchAPI() as stub:
        make_dataset(n=8)
        make_questions(n=3)
        # A k = 8 request may cost ~0.3 m$ at the batch prices (~230 prompt tokens, 20 answer tokens).
        experiment = define_experiment(make_spec(stub.base_url, endpoint=BATCH, k=[8], samples=1))
        Experiment.objects.filter(pk=experiment.pk).update(status="running", budget_usd="0.0001")
        generation.work(experiment.conditions.first().endpoint_id, budget_seconds=60)
    experiment.refresh_from_db()
    assert not stub.seen and not CallBatch.objects.exists()
    assert experiment.status == "cancelled"
    assert "next Batch API request may cost more than the $0.0001 left" in experiment.stop_reason
    assert set(experiment.transcripts.values_list("status", flat=True)) == {"cancelled"}
