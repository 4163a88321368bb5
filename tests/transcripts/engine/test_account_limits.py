"""Limits belong to the provider's account (server + key variable), per HTTP request, whatever calls it: the call
engine's pacing across endpoint versions and names, generation and judging, digit-by-digit verdicts, and the
provider's rate-limit headers. A stub server on 127.0.0.1 counts the requests it gets per key per second."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from judging.results import judge
from judging.results.rubrics import default_versions
from tests.builders import (
    experiment_with,
    make_condition,
    make_experiment,
    make_questions,
    make_transcript,
    versions_on,
)
from tests.conftest import in_threads
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import generation
from transcripts.endpoints import save_endpoint
from transcripts.models import Endpoint, Experiment, Transcript

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-test-account"


@pytest.fixture(autouse=True)
def declared_key(settings, monkeypatch):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"EM_TEST_KEY"})
    settings.GENERATION_BACKOFF_SECONDS = 0.05
    monkeypatch.setenv("EM_TEST_KEY", KEY)


def endpoint(stub: StubOpenAI, name: str, **fields) -> Endpoint:
    return save_endpoint(name=name, base_url=stub.base_url, model="stub", api_key_env="EM_TEST_KEY",
                         **{"max_concurrency": 4, "timeout_seconds": 5, **fields})


def pending_slots(name: str, on: Endpoint, n: int) -> Experiment:
    """A running experiment with `n` pending slots (k = 0, no dataset) generated through `on`."""
    [question] = make_questions(["q"], name=f"qs-{name}")
    experiment = make_experiment(name, questions=[question], status=Experiment.Status.RUNNING, max_tokens=5)
    condition = make_condition(experiment, endpoint=on, endpoint_name=on.name, model_name="stub", dataset_name="", k=0)
    for i in range(n):
        make_transcript(condition, question, i, status=Transcript.Status.PENDING, dispatch_order=i)
    return experiment


def answer_or_verdict(request: dict, n: int) -> Reply:
    if request.get("logprobs"):
        return Reply(body=completion("80", top_logprobs={"80": 0.0}))
    return Reply(body=completion(f"answer {n}"))


def arrivals(stub: StubOpenAI, key: str = KEY) -> list[float]:
    return sorted(t for t, headers in zip(stub.times, stub.headers, strict=True)
                  if headers.get("authorization") == f"Bearer {key}")


def most_in_one_second(times: list[float]) -> int:
    return max(sum(start <= t < start + 1 for t in times) for start in times)


def test_one_requests_per_minute_limit_holds_across_versions_names_generation_and_judging():
    with StubOpenAI(answer_or_verdict) as stub:
        first = endpoint(stub, "gen", requests_per_minute=120)
        second = endpoint(stub, "gen", requests_per_minute=120, timeout_seconds=6)  # version 2 of the same name
        other_name = endpoint(stub, "gen-other", requests_per_minute=120)
        judge_endpoint = endpoint(stub, "judge", requests_per_minute=120)
        assert (first.version, second.version) == (1, 2)
        for n, on in enumerate((first, second, other_name)):
            pending_slots(f"run-{n}", on, 3)
        finished = experiment_with({"m": ["one", "two", "three"]}, name="judged")
        judge.enqueue(finished.transcripts.all(), [versions_on(judge_endpoint)["coherent"]])
        in_threads(*(lambda pk=on.pk: generation.work(pk) for on in (first, second, other_name)),
                   lambda: judge.work(judge_endpoint.pk))
    assert Transcript.objects.filter(status="done").count() == 9 + 3
    times = arrivals(stub)
    assert len(times) == 12
    # 120 per minute for the account: one request every 0.5 s, whichever endpoint row and job sends it. Each
    # row paced on its own (the engine before) sent all 12 in about 1.5 s.
    assert times[-1] - times[0] >= 11 * 0.5 - 0.3
    assert most_in_one_second(times) <= 3


def digit_judge(request: dict, n: int) -> Reply:
    """A judge that writes one digit per token: "" → 8, "8" → 5 (or the end), "85" → the end; 81 weighted."""
    prefix = request["prompt"].rsplit("<|im_start|>assistant\n", 1)[1]
    top = {"": {"8": math.log(0.95), "x": math.log(0.05)}, "8": {"5": math.log(0.95), " ": math.log(0.05)}}.get(
        prefix, {" ": 0.0})
    body = {
        "id": "cmpl-stub", "object": "text_completion", "created": 0, "model": "stub",
        "choices": [{"index": 0, "text": max(top, key=top.get), "finish_reason": "length", "logprobs": {
            "tokens": [max(top, key=top.get)], "token_logprobs": [max(top.values())], "top_logprobs": [top],
            "text_offset": [0]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
    }
    return Reply(body=body)


def test_each_digit_request_of_a_verdict_is_paced():
    finished = experiment_with({"m": ["one", "two"]}, name="digits")
    with StubOpenAI(digit_judge) as stub:
        on = endpoint(stub, "judge", requests_per_minute=120)
        judge.enqueue(finished.transcripts.all(), [default_versions(on, digitwise=True)["coherent"]])
        judge.work(on.pk)
    assert [(r.status, r.method, round(r.score)) for r in finished.transcripts.get(answer="one").judge_scores.all()
            ] == [("done", "digits", 81)]
    times = arrivals(stub)
    assert len(times) == 2 * 3  # three requests per verdict ("", "8", "85")
    # Every request takes a permit: 0.5 s apart, within a verdict too (one permit per verdict sent its
    # three requests back to back, and the six spanned one interval). Arrivals at the stub carry each request's
    # own delay on a loaded machine (0.43 s was seen between permits 0.5 s apart), so: no two arrive within half
    # an interval, and the six span five intervals less that delay.
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.25
    assert times[-1] - times[0] >= 5 * 0.5 - 0.25


class WindowedProvider:
    """A provider allowing `limit` requests per one-second window, answering as OpenAI does: the remaining
    requests and the time to the reset in headers, and 429 past the limit."""

    def __init__(self, limit: int):
        self.limit, self.start, self.used, self.statuses = limit, None, {}, []
        self.lock = threading.Lock()

    def __call__(self, request: dict, n: int) -> Reply:
        with self.lock:
            # Windows start at the first request, so three windows span at least two seconds of arrivals.
            self.start = time.monotonic() if self.start is None else self.start
            elapsed = time.monotonic() - self.start
            window = int(elapsed)
            self.used[window] = self.used.get(window, 0) + 1
            remaining = self.limit - self.used[window]
            headers = {"x-ratelimit-limit-requests": str(self.limit),
                       "x-ratelimit-remaining-requests": str(max(0, remaining)),
                       "x-ratelimit-reset-requests": f"{window + 1 - elapsed + 0.02:.3f}s"}
            status = 429 if remaining < 0 else 200
            self.statuses.append(status)
        if status == 429:
            return Reply(status=429, headers={**headers, "retry-after": "1"},
                         body={"error": {"message": "Rate limit reached for requests", "code": "rate_limit_exceeded"}})
        return Reply(body=completion(f"answer {n}"), headers=headers, delay=0.05)


def test_the_providers_rate_limit_headers_slow_the_engine_before_a_429():
    provider = WindowedProvider(limit=4)
    with StubOpenAI(provider) as stub:
        on = endpoint(stub, "gen", max_concurrency=2)  # no limit configured: only the headers say
        experiment = pending_slots("windowed", on, 12)
        generation.work(on.pk)
    experiment.refresh_from_db()
    assert experiment.transcripts.filter(status="done").count() == 12
    assert provider.statuses.count(429) == 0 and experiment.rate_limited == 0
    times = arrivals(stub)
    assert times[-1] - times[0] >= 1.95  # 12 requests at 4 per window need three windows


def test_what_the_headers_say_is_left_is_spent_one_request_at_a_time():
    """"1 left" with nothing in flight lets one request start, not every free place: the second waits for the
    window's reset (the race a loaded machine hit in the test above)."""
    from transcripts.engine.limits import Account

    async def two_requests() -> list[float]:
        account = Account("stub+key")
        account.observe({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "400ms"})
        started = time.monotonic()
        waits = []
        for _ in range(2):
            await account.permit(10, db=None)
            waits.append(time.monotonic() - started)
        return waits

    first, second = asyncio.run(two_requests())
    assert first < 0.1 and second >= 0.39


def test_429_replies_are_counted_per_experiment_and_shown_on_its_progress(client, alice):
    replies = iter([Reply(status=429, headers={"retry-after": "0"}, body={"error": {"message": "slow down"}})] * 2)
    with StubOpenAI(lambda r, n: next(replies, Reply(body=completion("fine")))) as stub:
        on = endpoint(stub, "gen")
        experiment = pending_slots("throttled", on, 1)
        other = pending_slots("not-throttled", endpoint(stub, "gen-2"), 0)
        generation.work(on.pk)
    experiment.refresh_from_db()
    assert experiment.transcripts.get().status == "done"
    assert (experiment.rate_limited, Experiment.objects.get(pk=other.pk).rate_limited) == (2, 0)
    client.force_login(alice)
    page = client.get(f"/experiments/{experiment.pk}/progress/").content.decode()
    assert "Rate-limited replies (429): 2" in page
