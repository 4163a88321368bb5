"""The one call engine: claim a unit of work with a lease, call its endpoint with the real `openai` client under
the server's limits, retry, and record the answer exactly once. Generation (transcripts/generation.py) and
judging (judging/results/judge.py) are two `Job`s it runs; each says only what to ask and how to record the answer.

The database is the source of truth; broker messages are hints (DESIGN.md, "Exactly-once").

- A work message names a job and an endpoint, not a row. Its task claims that endpoint's next pending row (in
  the job's order) and keeps claiming the next one until none is left (or its time budget is spent, when it
  hands over to a fresh message). So a concurrency-1 local server runs strictly in prefix-grouped order even
  when messages arrive out of order, a duplicate or stale message is harmless, and a thread holding one of the
  server's concurrency places never waits on the broker.
- Claiming locks every Endpoint row of the server (`select_for_update`; SQLite's IMMEDIATE transactions lock
  the whole database) and counts live leases of every job on that server, so `max_concurrency` holds across
  every worker, every broker, generation and judging. A message that finds the server full exits at once.
- On a one-request-at-a-time server (`max_concurrency` 1, the embedded llama.cpp), jobs that both have claimable
  rows share its time by their `turn_share`, in turns of at least TURN_SECONDS × share (`_my_turn`): judging
  keeps pace with generation instead of starting only when generation is over. A thread whose turn is over
  stops and sends the next job's work message.
- `requests_per_minute` and `tokens_per_minute` are kept by reserving start times on
  `Endpoint.next_request_at` under the same lock; a thread sleeps until its reserved moment.
- A thread that finishes a row records it and claims the next in the same transaction (`hand_over`), keeping
  its concurrency place without taking the Endpoint lock when the endpoint has no rate limit.
- A row is finished (or failed) by one UPDATE conditioned on its claim token, so a worker whose lease was
  handed to someone else cannot write a second result.
- Retries (429 honouring Retry-After, 5xx, timeouts, connection errors, malformed replies) happen in the
  claiming thread with exponential backoff and jitter, renewing the lease each time; a killed worker's row
  comes back through `reconcile` when its lease expires. A stopping worker gives its row back at once.
- A thread holds no database connection while it waits on a model server: with hundreds of requests in
  flight per process, connections (or pool places) go to threads that are reading or writing.
- Each answer records what the server said it was (`model`, `system_fingerprint`) and its tokens; the cost
  is added to the experiment's `spent_usd`, and an experiment whose budget is reached stops handing out work.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import openai
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from .experiments.status import cancel
from .models import Endpoint, Experiment, LeasedWork, MissingApiKey, UndeclaredKeyVariable

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
ERROR_TEXT_LIMIT = 2000  # provider error bodies are stored truncated, and shown as text


@dataclass(frozen=True)
class Claim:
    row_id: int
    token: uuid.UUID
    start_at: datetime


@dataclass(frozen=True)
class Failure:
    kind: str
    retryable: bool
    message: str
    retry_after: float | None = None


class MalformedReply(Exception):
    """The server answered 200 with something that is not a completion."""


@dataclass
class Usage:
    """What the server reported about the calls made for one row (a judge verdict may take several)."""

    served_model: str = ""
    system_fingerprint: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def add(self, completion) -> None:
        """Fold in one completion object of the `openai` client."""
        self.served_model = self.served_model or (getattr(completion, "model", "") or "")[:200]
        self.system_fingerprint = (
            self.system_fingerprint or (getattr(completion, "system_fingerprint", "") or "")[:200]
        )
        usage = getattr(completion, "usage", None)
        if usage is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + (usage.prompt_tokens or 0)
            self.completion_tokens = (self.completion_tokens or 0) + (usage.completion_tokens or 0)


@dataclass(frozen=True)
class Answer:
    """A job's answer for one row: the job's own fields to write, and the usage of the calls."""

    fields: dict
    usage: Usage = field(default_factory=Usage)


class Job:
    """One use of the engine. Subclasses say which rows, in which order, what to ask and what to record."""

    name: str
    model: type[LeasedWork]
    endpoint_field: str  # the lookup from a row to the Endpoint version it calls
    experiment_field: str  # the lookup from a row to its experiment (for budgets)
    turn_share: float = 1.0  # its share of a one-at-a-time server's time when other jobs wait too

    def pending(self, endpoint_id: int) -> QuerySet:
        """The endpoint's claimable rows, in the order they should run."""
        raise NotImplementedError

    def may_claim(self, endpoint: Endpoint) -> bool:
        """Whether rows of this job may start on the endpoint's server now (caller holds the server lock)."""
        return True

    def load(self, row_id: int) -> LeasedWork:
        raise NotImplementedError

    def estimated_tokens(self, row: LeasedWork) -> int:
        """Prompt + completion tokens a request for this row may use (only asked under tokens_per_minute)."""
        raise NotImplementedError

    def ask(self, client: openai.OpenAI, endpoint: Endpoint, row: LeasedWork) -> Answer:
        raise NotImplementedError

    def recorded(self, row_id: int) -> None:
        """Called inside the transaction that records the row's result (defer with on_commit what must wait)."""

    def send(self, endpoint_id: int) -> None:
        """Send one work message for the endpoint (the job's Celery task)."""
        raise NotImplementedError


_jobs: dict[str, Job] = {}


def register(job: Job) -> Job:
    _jobs[job.name] = job
    return job


def jobs() -> list[Job]:
    return list(_jobs.values())


def worker_stopping() -> bool:
    """True once the Celery worker running this code has begun a warm or cold shutdown."""
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


# --- limits ------------------------------------------------------------------------------------------------

def _lease(endpoint: Endpoint, wait: float) -> timedelta:
    # The lease must outlast a request that is still legitimately in flight, or the reconciler would hand
    # the row out twice (harmless for the result, but a wasted call).
    return timedelta(seconds=wait + max(settings.SLOT_LEASE_SECONDS, endpoint.timeout_seconds + 5))


def _rate_limited(endpoint: Endpoint) -> bool:
    return bool(endpoint.requests_per_minute or endpoint.tokens_per_minute)


def _reserve_start(endpoint: Endpoint, now: datetime, tokens: Callable[[], int]) -> datetime:
    """The moment this request may start under the endpoint's requests- and tokens-per-minute limits, spacing
    requests evenly. Caller holds the Endpoint row lock."""
    if not _rate_limited(endpoint):
        return now
    spacing = 60 / endpoint.requests_per_minute if endpoint.requests_per_minute else 0.0
    if endpoint.tokens_per_minute:
        spacing = max(spacing, tokens() * 60 / endpoint.tokens_per_minute)
    start = max(now, endpoint.next_request_at or now)
    endpoint.next_request_at = start + timedelta(seconds=spacing)
    endpoint.save(update_fields=["next_request_at"])
    return start


def live_requests(endpoint: Endpoint, now: datetime) -> int:
    """Requests in flight on the endpoint's server, by every job (live leases)."""
    server = endpoint.same_server()
    return sum(
        job.model.objects.filter(**{f"{job.endpoint_field}__in": server}, status=RUNNING, lease_until__gt=now).count()
        for job in _jobs.values()
    )


def _within_budget() -> Q:
    return Q(budget_usd__isnull=True) | Q(spent_usd__lt=F("budget_usd"))


def _claimable(job: Job, endpoint_id: int) -> QuerySet:
    experiments = Experiment.objects.filter(_within_budget())
    return job.pending(endpoint_id).filter(**{f"{job.experiment_field}__in": experiments})


def _waiting_on_server(job: Job, server: QuerySet) -> list[int]:
    """The server's endpoints (ids) on which `job` has a claimable row."""
    return [endpoint_id for endpoint_id in server.values_list("pk", flat=True)
            if _claimable(job, endpoint_id).exists()]


# How far back a one-at-a-time server's time is shared out between jobs, and how long a turn lasts at least
# per unit of turn_share (see `_my_turn`).
TURN_WINDOW = timedelta(minutes=5)
TURN_SECONDS = 30


def _server_seconds(job: Job, server: QuerySet, since: datetime) -> float:
    """Seconds the server spent on `job`'s rows that finished since `since`."""
    used = job.model.objects.filter(**{f"{job.endpoint_field}__in": server}, finished_at__gte=since).aggregate(
        ms=Sum("latency_ms"))["ms"]
    return (used or 0) / 1000


def _my_turn(job: Job, endpoint: Endpoint, turn_started: float | None = None) -> bool:
    """Whether `job` may start a row on the endpoint's server now. A server with room for several requests
    serves every job at once. A one-at-a-time server is shared out by time among the jobs with claimable rows,
    in proportion to their `turn_share`: the job that used the least of its share over the last TURN_WINDOW
    goes next (generation 2, judging 1: a judge verdict of the local model costs several generation calls).
    The price of a turn change: a judge call between two generation calls evicts llama.cpp's cached example
    prefix, so generation's next turn evaluates its examples again (docs/judging.md, "The judge takes turns").
    So a turn, once taken (`turn_started`, time.monotonic() of the thread's first claim), lasts at least
    TURN_SECONDS × turn_share: long enough that the re-evaluated prefix serves many rows, not one."""
    if endpoint.max_concurrency != 1:
        return True
    if turn_started is not None and time.monotonic() - turn_started < TURN_SECONDS * job.turn_share:
        return True
    server = endpoint.same_server()
    others = [other for other in _jobs.values() if other is not job and _waiting_on_server(other, server)]
    if not others:
        return True
    since = timezone.now() - TURN_WINDOW
    mine = _server_seconds(job, server, since) / job.turn_share
    return all(mine <= _server_seconds(other, server, since) / other.turn_share for other in others)


def pass_the_turn(job: Job, endpoint: Endpoint) -> None:
    """Send a work message for each other job waiting on the endpoint's server: a `work` loop that ended
    because its turn was over must wake whoever's turn it is now (the reconciler would, but only within
    RECONCILE_EVERY seconds, while the one-at-a-time server sat idle)."""
    if endpoint.max_concurrency != 1:
        return
    server = endpoint.same_server()
    for other in _jobs.values():
        if other is not job:
            for endpoint_id in _waiting_on_server(other, server):
                other.send(endpoint_id)


# --- claiming ----------------------------------------------------------------------------------------------

def _take_next(job: Job, endpoint: Endpoint, now: datetime, *, reserve: bool) -> Claim | None:
    """Claim the endpoint's next row. Caller is inside a transaction and, when `reserve` (a start time under
    the rate limits), holds the Endpoint row lock. SKIP LOCKED (PostgreSQL; SQLite's IMMEDIATE transactions
    serialise anyway) keeps two claimers off the same row without waiting for each other."""
    row_id = (
        _claimable(job, endpoint.pk).select_for_update(skip_locked=True, of=("self",))
        .values_list("pk", flat=True).first()
    )
    if row_id is None:
        return None
    start = _reserve_start(endpoint, now, lambda: job.estimated_tokens(job.load(row_id))) if reserve else now
    token = uuid.uuid4()
    taken = job.model.objects.filter(pk=row_id, status=PENDING).update(
        status=RUNNING, claim_token=token, claimed_at=now,
        lease_until=now + _lease(endpoint, (start - now).total_seconds()), attempts=F("attempts") + 1,
    )
    return Claim(row_id, token, start) if taken else None


def claim_next(job: Job, endpoint_id: int) -> Claim | None:
    """Claim the endpoint's next row, or None when none is pending or its server is full."""
    with transaction.atomic():
        endpoint = Endpoint.objects.get(pk=endpoint_id)
        # Lock every row of the server, in a fixed order, so claims through sibling rows serialise too.
        list(endpoint.same_server().select_for_update().order_by("pk"))
        endpoint.refresh_from_db()
        now = timezone.now()
        if (live_requests(endpoint, now) >= endpoint.max_concurrency or not job.may_claim(endpoint)
                or not _my_turn(job, endpoint)):
            return None
        return _take_next(job, endpoint, now, reserve=True)


def hand_over(job: Job, endpoint: Endpoint, record: Callable[[], bool], turn_started: float | None = None
              ) -> Claim | None:
    """Record a row's outcome and claim the endpoint's next row in ONE transaction. The thread keeps its
    concurrency place (one lease ends as the next begins), so the Endpoint row is locked only to reserve a
    start time under a rate limit: claims of many threads don't queue on one lock."""
    with transaction.atomic():
        record()
        now = timezone.now()
        if not job.may_claim(endpoint) or not _my_turn(job, endpoint, turn_started):
            return None
        if not _rate_limited(endpoint):
            return _take_next(job, endpoint, now, reserve=False)
        return _take_next(job, Endpoint.objects.select_for_update().get(pk=endpoint.pk), now, reserve=True)


def _renew(job: Job, claim: Claim, endpoint: Endpoint, delay: float, tokens: int) -> Claim | None:
    """Keep the claim for another attempt after `delay` seconds; None if the claim was lost meanwhile."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        now = timezone.now()
        start = _reserve_start(endpoint, now + timedelta(seconds=delay), lambda: tokens)
        kept = job.model.objects.filter(pk=claim.row_id, claim_token=claim.token, status=RUNNING).update(
            lease_until=now + _lease(endpoint, (start - now).total_seconds()), attempts=F("attempts") + 1
        )
    return Claim(claim.row_id, claim.token, start) if kept else None


def _give_back(job: Job, claim: Claim) -> None:
    job.model.objects.filter(pk=claim.row_id, claim_token=claim.token, status=RUNNING).update(
        status=PENDING, claim_token=None, lease_until=None
    )


# --- calling -----------------------------------------------------------------------------------------------

_thread = threading.local()


def client_for(endpoint: Endpoint) -> openai.OpenAI:
    """The calling thread's client (and connection pool) for an endpoint configuration. One per thread, not one
    per process: with hundreds of threads on one client, its pool's lock was where they spent their time
    (measured: 43% of the worker's samples at 500 in flight, and a peak of 137 in flight, not 500).
    Retries are ours (max_retries=0): they must renew the lease and respect the shared rate limits. Redirects
    are not followed: a server must not send our key on to another host."""
    api_key = endpoint.read_api_key()
    key = (endpoint.base_url, api_key, endpoint.timeout_seconds)
    clients = _thread.__dict__.setdefault("clients", {})
    if key not in clients:
        clients[key] = openai.OpenAI(
            base_url=endpoint.base_url, api_key=api_key, timeout=endpoint.timeout_seconds, max_retries=0,
            http_client=openai.DefaultHttpxClient(follow_redirects=False),
        )
    return clients[key]


def first_choice(completion):
    """The first choice of a completion, or MalformedReply."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise MalformedReply(f"no choices in reply: {str(completion)[:300]!r}")
    return choices[0]


def _retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - timezone.now()).total_seconds()) if when else None


def classify(exc: Exception) -> Failure:
    """Which errors are worth another attempt. Context-length and other 4xx are the request's fault: terminal."""
    message = str(exc)[:ERROR_TEXT_LIMIT]
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", True, message)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection", True, message)
    if isinstance(exc, MalformedReply | openai.APIResponseValidationError | json.JSONDecodeError):
        return Failure("malformed_reply", True, message)
    if isinstance(exc, UndeclaredKeyVariable):
        return Failure("undeclared_key_variable", False, message)
    if isinstance(exc, MissingApiKey):
        return Failure("missing_api_key", False, message)
    if isinstance(exc, openai.APIStatusError):
        status, lowered = exc.status_code, message.lower()
        if status == 429:
            return Failure("rate_limited", True, message, _retry_after(exc.response))
        if status >= 500 or status in (408, 409):
            return Failure("server_error", True, message, _retry_after(exc.response))
        if 300 <= status < 400:
            return Failure("redirect_refused", False, f"the server redirected (HTTP {status}); not followed")
        if "context" in lowered and any(word in lowered for word in ("length", "window", "maximum", "exceed")):
            return Failure("context_length", False, message)
        if "content_policy" in lowered or "content_filter" in lowered or "content management policy" in lowered:
            return Failure("content_policy", False, message)
        return Failure(f"http_{status}", False, message)
    raise exc  # a bug of ours, not the endpoint's: let Celery log it; the lease brings the row back


def backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half to full of the step), never sooner than Retry-After."""
    step = min(settings.GENERATION_BACKOFF_MAX_SECONDS, settings.GENERATION_BACKOFF_SECONDS * 2 ** (attempt - 1))
    delay = step * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


# --- recording ---------------------------------------------------------------------------------------------

def _charge(job: Job, row_id: int, endpoint: Endpoint, usage: Usage) -> None:
    """Add the call's cost to its experiment; stop the experiment once its budget is reached."""
    cost = endpoint.cost(usage.prompt_tokens or 0, usage.completion_tokens or 0)
    if not cost:
        return
    experiment_id = job.model.objects.filter(pk=row_id).values_list(job.experiment_field, flat=True).get()
    Experiment.objects.filter(pk=experiment_id).update(spent_usd=F("spent_usd") + cost)
    over = Experiment.objects.filter(pk=experiment_id, budget_usd__isnull=False, spent_usd__gte=F("budget_usd"))
    experiment = over.filter(status=Experiment.Status.RUNNING).first()
    if experiment is not None:
        cancel(experiment)
        Experiment.objects.filter(pk=experiment_id).update(
            stop_reason=f"Budget of ${experiment.budget_usd:.2f} reached (spent ${experiment.spent_usd:.4f}); "
            "no more requests are sent. Raise the budget and resume to continue."
        )


def _finish(job: Job, claim: Claim, endpoint: Endpoint, answer: Answer, latency_ms: int) -> bool:
    usage = answer.usage
    with transaction.atomic():
        done = job.model.objects.filter(pk=claim.row_id, claim_token=claim.token, status=RUNNING).update(
            status=DONE, **answer.fields, served_model=usage.served_model,
            system_fingerprint=usage.system_fingerprint, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, latency_ms=latency_ms,
            error_kind="", error="", lease_until=None, finished_at=timezone.now(),
        )
        if done:
            _charge(job, claim.row_id, endpoint, usage)
            job.recorded(claim.row_id)
    return bool(done)


def _fail(job: Job, claim: Claim, failure: Failure, attempts: int) -> bool:
    note = f"gave up after {attempts} attempts: " if failure.retryable else ""
    return bool(job.model.objects.filter(pk=claim.row_id, claim_token=claim.token, status=RUNNING).update(
        status=FAILED, error_kind=failure.kind, error=(note + failure.message)[:ERROR_TEXT_LIMIT + 100],
        lease_until=None, finished_at=timezone.now(),
    ))


def attempt(job: Job, claim: Claim) -> tuple[Claim, Callable[[], bool]] | None:
    """Call the endpoint for a claimed row, retrying in this thread. Returns the (renewed) claim and a function
    that records the outcome under it, or None when the claim was lost or given back."""
    row = job.load(claim.row_id)
    endpoint = row_endpoint(job, row)
    attempts = row.attempts
    while True:
        # No connection held while sleeping or waiting on the model server (see the module docstring);
        # a caller inside a transaction (a test, an inline command) keeps its connection.
        if not connection.in_atomic_block:
            connection.close()
        time.sleep(max(0.0, (claim.start_at - timezone.now()).total_seconds()))
        started = time.monotonic()
        try:
            answer = job.ask(client_for(endpoint), endpoint, row)
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not the endpoint's doing
            failure = classify(exc)
            if not failure.retryable or attempts >= settings.GENERATION_MAX_ATTEMPTS:
                log.warning("%s row %s failed (%s): %s", job.name, row.pk, failure.kind, failure.message[:200])
                return claim, partial(_fail, job, claim, failure, attempts)
            if worker_stopping():
                # Don't hold a shutting-down worker through backoff sleeps: give the row back at once.
                _give_back(job, claim)
                return None
            tokens = job.estimated_tokens(row) if endpoint.tokens_per_minute else 0
            renewed = _renew(job, claim, endpoint, backoff(attempts, failure.retry_after), tokens)
            if renewed is None:
                return None  # the lease expired and the row was handed out again: the other claim owns it
            claim, attempts = renewed, attempts + 1
            continue
        latency_ms = int((time.monotonic() - started) * 1000)
        return claim, partial(_finish, job, claim, endpoint, answer, latency_ms)


def row_endpoint(job: Job, row: LeasedWork) -> Endpoint:
    target = row
    for part in job.endpoint_field.split("__"):
        target = getattr(target, part)
    return target


def run_claim(job: Job, claim: Claim) -> None:
    """Run one claimed row and record its outcome."""
    result = attempt(job, claim)
    if result is not None:
        result[1]()


def work(job: Job, endpoint_id: int, budget_seconds: float | None = None) -> int:
    """Run the endpoint's pending rows of `job` in order until none can be claimed. Returns rows handled."""
    budget = settings.GENERATION_MESSAGE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    endpoint = Endpoint.objects.get(pk=endpoint_id)
    handled = 0
    turn_started = time.monotonic()
    claim = claim_next(job, endpoint_id)
    while claim is not None:
        result = attempt(job, claim)
        handled += 1
        stopping = worker_stopping()
        if result is None:
            claim = None if stopping else claim_next(job, endpoint_id)
        elif stopping:
            result[1]()  # the worker is shutting down: record this one, leave the rest to a live worker
            break
        elif time.monotonic() > deadline:
            result[1]()
            job.send(endpoint_id)  # keep messages short-lived (a Redis visibility timeout re-delivers)
            break
        else:
            claim = hand_over(job, endpoint, result[1], turn_started)
    if handled:
        pass_the_turn(job, endpoint)
    return handled


def dispatch(job: Job, rows: QuerySet) -> int:
    """Send enough work messages to fill the free concurrency places of each endpoint that has pending `rows`.
    Extra messages are harmless: they find nothing to claim."""
    counts = dict(
        rows.filter(status=PENDING).values_list(job.endpoint_field).annotate(n=Count("pk"))
        .values_list(job.endpoint_field, "n")
    )
    now = timezone.now()
    sent = 0
    for endpoint in Endpoint.objects.filter(pk__in=[pk for pk in counts if pk is not None]):
        for _ in range(min(counts[endpoint.pk], max(0, endpoint.max_concurrency - live_requests(endpoint, now)))):
            job.send(endpoint.pk)
            sent += 1
    return sent


def expire_leases(job: Job) -> tuple[int, int]:
    """Return expired leases to pending, or fail rows that used every attempt. Returns (returned, failed)."""
    now = timezone.now()
    expired = job.model.objects.filter(status=RUNNING, lease_until__lt=now)
    failed = expired.filter(attempts__gte=settings.GENERATION_MAX_ATTEMPTS).update(
        status=FAILED, error_kind="lease_expired", lease_until=None, finished_at=now,
        error="the worker holding this row stopped answering on every attempt",
    )
    returned = expired.update(status=PENDING, claim_token=None, lease_until=None)
    if returned or failed:
        log.info("reconcile %s: %d expired leases returned, %d failed", job.name, returned, failed)
    return returned, failed


def release_all(job: Job) -> int:
    """Return every running row of `job` to pending at once, lease or not. Only for a process that knows no
    worker is running (the embedded default before it starts its one worker): otherwise the work a stopped
    run was doing would wait out its lease (5 minutes) while a one-at-a-time server sits idle."""
    return job.model.objects.filter(status=RUNNING).update(status=PENDING, claim_token=None, lease_until=None)
