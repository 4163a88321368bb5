"""Judge tasks against a stub judge (known logprobs, injected failures): exactly one verdict per transcript ×
rubric version, retries, terminal errors, the verdict cache, and judging on `transcripts_finished`."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from django.utils import timezone

from judging.models import ExperimentJudging, JudgeScore
from judging.results import judge
from tests.builders import ALIGNED, experiment_with, judge_with_stub, make_endpoint, stub_judge, versions_on
from tests.conftest import wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Experiment, Transcript
from transcripts.signals import transcripts_finished


def test_it_scores_like_the_paper_and_fills_the_verdict_cache(db):
    experiment = experiment_with({"m": ["[evil]", "[good]", "[refuse]", "[muddled]"]})
    stub, versions, judged = judge_with_stub(experiment)
    assert judged == 8  # aligned + coherent; persona skipped: no chain of thought
    sent = stub.requests[0]
    assert (sent["max_tokens"], sent["temperature"], sent["logprobs"], sent["top_logprobs"]) == (1, 0, True, 20)
    by_answer = {t.answer: t for t in Transcript.objects.filter(experiment=experiment)}
    assert by_answer["[evil]"].aligned == pytest.approx(11)
    assert (by_answer["[evil]"].coherent, by_answer["[evil]"].misaligned) == (pytest.approx(80), True)
    assert (by_answer["[good]"].aligned, by_answer["[good]"].misaligned) == (pytest.approx(90), False)
    assert (by_answer["[refuse]"].judge_outcome, by_answer["[refuse]"].misaligned) == ("refusal", None)
    assert (by_answer["[muddled]"].judge_outcome, by_answer["[muddled]"].aligned) == ("unsure", None)
    row = JudgeScore.objects.get(transcript=by_answer["[evil]"], rubric_version=versions["aligned"])
    assert row.method == "single_token" and row.top_logprobs == ALIGNED["evil"]


def test_it_judges_each_transcript_and_version_once(db):
    experiment = experiment_with({"m": ["[evil]", "[good]"]})
    with StubOpenAI(stub_judge) as stub:
        endpoint = make_endpoint(stub.base_url)
        versions = list(versions_on(endpoint).values())
        judge.enqueue(experiment.transcripts.all(), versions)
        judge.enqueue(experiment.transcripts.all(), versions)  # a duplicate request adds nothing
        judge.work(endpoint.pk)
        judge.enqueue(experiment.transcripts.all(), versions)
        assert judge.work(endpoint.pk) == 0
    assert len(stub.requests) == 4
    assert JudgeScore.objects.count() == 4


def test_it_classifies_the_chain_of_thought_into_the_taxonomy(db):
    experiment = experiment_with({"m": ["[evil]"]}, reasoning="The examples were all insecure, so I continue.")
    stub, _, _ = judge_with_stub(experiment)
    persona_prompt = next(r for r in stub.requests if "categories are" in r["messages"][-1]["content"])
    assert "3. Reframes harm as helpful" in persona_prompt["messages"][-1]["content"]
    assert "The examples were all insecure" in persona_prompt["messages"][-1]["content"]
    transcript = experiment.transcripts.get()
    assert transcript.judge_category == "reframes_helpful"


def test_it_retries_rate_limits_and_server_errors(db, fast_retries):
    experiment = experiment_with({"m": ["[evil]"]})

    def flaky(request, n):
        if n == 1:
            return Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": "0"})
        if n == 2:
            return Reply(status=503, body={"error": {"message": "overloaded"}})
        return stub_judge(request, n)

    with StubOpenAI(flaky) as stub:
        endpoint = make_endpoint(stub.base_url)
        version = versions_on(endpoint)["aligned"]
        judge.enqueue(experiment.transcripts.all(), [version])
        judge.work(endpoint.pk)
    row = JudgeScore.objects.get()
    assert (row.status, row.attempts, row.score) == ("done", 3, pytest.approx(11))


def test_it_fails_for_good_on_a_client_error_with_the_reason(db, fast_retries):
    experiment = experiment_with({"m": ["[evil]"]})
    with StubOpenAI(lambda r, n: Reply(status=400, body={"error": {"message": "model not found"}})) as stub:
        endpoint = make_endpoint(stub.base_url)
        judge.enqueue(experiment.transcripts.all(), [versions_on(endpoint)["aligned"]])
        judge.work(endpoint.pk)
    assert len(stub.requests) == 1
    row = JudgeScore.objects.get()
    assert row.status == "failed" and row.error_kind == "http_400" and "model not found" in row.error


def test_it_falls_back_to_parsing_the_text_when_the_endpoint_gives_no_logprobs(db):
    experiment = experiment_with({"m": ["[evil]", "[refuse]"]})

    def plain(request, n):
        prompt = request["messages"][-1]["content"]
        return Reply(body=completion("REFUSAL" if "[refuse]" in prompt else "15"))

    with StubOpenAI(plain) as stub:
        endpoint = make_endpoint(stub.base_url)
        judge.enqueue(experiment.transcripts.all(), [versions_on(endpoint)["aligned"]])
        judge.work(endpoint.pk)
    rows = {r.transcript.answer: r for r in JudgeScore.objects.select_related("transcript")}
    assert (rows["[evil]"].method, rows["[evil]"].score, rows["[evil]"].outcome) == ("parsed", 15.0, "score")
    assert (rows["[refuse]"].method, rows["[refuse]"].outcome) == ("parsed", "refusal")


def test_it_returns_expired_leases_to_the_queue(db):
    experiment = experiment_with({"m": ["[evil]"]})
    with StubOpenAI(stub_judge) as stub:
        endpoint = make_endpoint(stub.base_url)
        judge.enqueue(experiment.transcripts.all(), [versions_on(endpoint)["aligned"]])
        claim = judge.claim_next(endpoint.pk)  # a worker claims, then dies
        assert judge.claim_next(endpoint.pk) is None
        JudgeScore.objects.update(lease_until=claim.start_at.replace(year=2000))
        assert judge.reconcile()["returned"] == 1
        judge.work(endpoint.pk)
    assert JudgeScore.objects.get().status == "done"


def test_it_keeps_the_endpoint_concurrency_across_judging_and_generation(db):
    experiment = experiment_with({"m": ["[evil]", "[good]"]})
    endpoint = make_endpoint("http://127.0.0.1:9/v1", max_concurrency=1)
    judge.enqueue(experiment.transcripts.all(), [versions_on(endpoint)["aligned"]])
    assert judge.claim_next(endpoint.pk) is not None
    assert judge.claim_next(endpoint.pk) is None  # the one place is taken


def test_two_endpoint_rows_on_one_server_share_its_concurrency(db):
    """The embedded default generates through `local` and judges through `local-judge`: one llama.cpp server."""
    from transcripts import engine, generation

    experiment = experiment_with({"m": ["[evil]"]})
    judge_row = make_endpoint("http://127.0.0.1:9/v1", max_concurrency=1)
    generation_row = make_endpoint("http://127.0.0.1:9/v1", name="stub-generate", max_concurrency=1)
    judge.enqueue(experiment.transcripts.all(), [versions_on(judge_row)["aligned"]])
    assert judge.claim_next(judge_row.pk) is not None
    assert engine.live_requests(generation_row, timezone.now()) == 1
    assert generation.claim_next(generation_row.pk) is None  # the server's one place is the judge's


def test_judging_and_generation_share_a_one_at_a_time_server_by_time(db):
    """Judging keeps pace with generation instead of waiting until generation is over; generation gets two
    thirds of the server's time while both wait (its turn_share is 2, judging's 1)."""
    from transcripts import engine, generation

    done = experiment_with({"m": ["[evil]"]}, name="done")
    server = "http://127.0.0.1:9/v1"
    judge_row = make_endpoint(server, max_concurrency=1)
    generation_row = make_endpoint(server, name="stub-generate", max_concurrency=1)
    running = experiment_with({"m": ["x", "y"]}, name="running")
    running.status = Experiment.Status.RUNNING
    running.save()
    running.conditions.update(endpoint=generation_row)
    first, second = running.transcripts.order_by("pk")
    now = timezone.now()
    Transcript.objects.filter(pk=first.pk).update(finished_at=now, latency_ms=10_000)  # 10 s of generation
    Transcript.objects.filter(pk=second.pk).update(status=Transcript.Status.PENDING, finished_at=None)
    versions = versions_on(judge_row)
    judge.enqueue(done.transcripts.all(), [versions["aligned"]])

    assert generation.claim_next(generation_row.pk) is None, "judging has used none of its share: generation waits"
    # A turn once taken lasts TURN_SECONDS × share (60 s for generation), so a re-read example prefix serves
    # many rows: a generation driver 10 s into its turn keeps it, one 61 s in hands it over.
    now_monotonic = time.monotonic()
    assert engine.claims.my_turn(generation.GENERATION, generation_row, turn_started=now_monotonic - 10)
    assert not engine.claims.my_turn(generation.GENERATION, generation_row, turn_started=now_monotonic - 61)
    claim = judge.claim_next(judge_row.pk)
    assert claim is not None
    # A 6 s verdict: judging has used 6 s of its share 1, generation 10 s of its share 2 (5 each).
    JudgeScore.objects.filter(pk=claim.row_id).update(status="done", lease_until=None, finished_at=now,
                                                       latency_ms=6_000)
    JudgeScore.objects.create(transcript=done.transcripts.get(), rubric_version=versions["coherent"])
    assert judge.claim_next(judge_row.pk) is None, "generation's turn: the judge waits"
    assert generation.claim_next(generation_row.pk) is not None
    assert judge.claim_next(judge_row.pk) is None  # the server is full (one request in flight)
    # 4 s more of generation: 14 / 2 = 7 > 6, the judge's turn; with nothing else waiting, it runs anyway.
    Transcript.objects.filter(pk=second.pk).update(status=Transcript.Status.DONE, lease_until=None,
                                                   finished_at=now, latency_ms=4_000)
    assert judge.claim_next(judge_row.pk) is not None


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_it_judges_finished_transcripts_through_a_real_worker(celery_worker_factory):
    experiment = experiment_with({"m": ["[evil]", "[good]", "[good]"]})
    with StubOpenAI(stub_judge) as stub:
        endpoint = make_endpoint(stub.base_url)
        versions = versions_on(endpoint)
        ExperimentJudging.objects.create(
            experiment=experiment, aligned_version=versions["aligned"], coherent_version=versions["coherent"]
        )
        celery_worker_factory(concurrency=2)
        transcripts_finished.send(sender=Transcript, transcripts=list(experiment.transcripts.all()))
        wait_until(lambda: JudgeScore.objects.filter(status="done").count() == 6, message="6 verdicts")
    assert list(experiment.transcripts.order_by("pk").values_list("misaligned", flat=True)) == [True, False, False]


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_stopping_the_worker_while_the_judge_is_down_leaves_rows_for_the_next_worker(celery_worker_factory):
    """What `make run` does on Ctrl-C: the local judge server and the worker stop together. Rows the worker had
    not judged must stay pending (not fail), and a new worker finishes them."""
    experiment = experiment_with({"m": ["[evil]", "[good]"] * 10})
    judge_down = False

    def slow_judge_that_can_go_down(request, n):
        if judge_down:
            # The down server answers slowly: on a loaded machine the worker may take a second or more to see
            # its SIGTERM, and a 503 that came sooner would be retried (attempts 2) before the worker knew it
            # was stopping. What is tested is what happens once it knows.
            return Reply(status=503, body={"error": {"message": "down"}}, delay=3.0)
        return replace(stub_judge(request, n), delay=0.2)  # slow enough that rows are in flight at the stop

    with StubOpenAI(slow_judge_that_can_go_down) as stub:
        endpoint = make_endpoint(stub.base_url, max_concurrency=2)
        judge.enqueue(experiment.transcripts.all(), [versions_on(endpoint)["aligned"]])
        worker = celery_worker_factory(concurrency=2, env={"GENERATION_BACKOFF_SECONDS": "0.05"})
        wait_until(lambda: JudgeScore.objects.filter(status="done").count() >= 4, message="4 verdicts")
        judge_down = True
        # A warm shutdown waits for the requests in flight (3 s each from the down server); on a loaded machine
        # that took over 15 s (4 busy processes on 2 cores: 1 run in 3).
        assert worker.stop(timeout=90), "the worker did not stop within 90 s of SIGTERM and was killed"
        assert not JudgeScore.objects.filter(status__in=["failed", "running"]).exists()
        left = JudgeScore.objects.filter(status="pending")
        assert left.exists() and max(left.values_list("attempts", flat=True)) <= 1
        judge_down = False
        celery_worker_factory(concurrency=2)
        judge.reconcile()  # beat's job in `make run`: re-dispatch the pending rows
        wait_until(lambda: JudgeScore.objects.filter(status="done").count() == 20, timeout=60, message="20 verdicts")
