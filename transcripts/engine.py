"""The one call engine: claim units of work with a lease, call their endpoint with the async `openai` client
under the provider's limits, retry, and record each answer exactly once. Generation (transcripts/generation.py)
and judging (judging/results/judge.py) are two `Job`s it runs; each says only what to ask and how to record the answer.
The design and its measurements: docs/generation.md.

The database is the source of truth; broker messages are hints (DESIGN.md, "Exactly-once").

- One event loop per worker process (a daemon thread) drives every request of that process. A work message
  names a job and an endpoint; its Celery task starts that pair's *driver* on the loop (or, when one already
  runs in this process, pokes it and returns). The driver keeps the server's places filled, in the job's
  order, until nothing is left to claim; so a concurrency-1 local server runs strictly in prefix-grouped order,
  and a duplicate or stale message is harmless. The driver's database work runs off the loop (`_Home`), so
  the loop never blocks on the database: claims on the task's thread (which waits for its driver anyway),
  recording on a thread and connection of its own, so the two overlap and a slow commit never holds new
  requests (inside a caller's transaction — a test, a management command — or on SQLite, both on the task's
  thread, which sees and makes the caller's changes).
- A claim is one transaction, committed at once: it takes the server's lock (an advisory lock on PostgreSQL;
  SQLite's IMMEDIATE transactions lock the whole database), counts live leases of every job on the server, less
  the driver's claims whose answers are in hand but not recorded yet, so `max_concurrency` holds across every
  process, generation and judging, and claims N rows with ONE
  `UPDATE … WHERE id IN (SELECT … LIMIT N FOR UPDATE SKIP LOCKED)` under one claim token, then loads them with
  what the request needs in one query. Recording, a transaction per batch, locks the rows that still carry
  their claim token and writes them with one UPDATE per kind of outcome, so a driver whose lease was handed to
  someone else cannot write a second result. Costs are charged once per experiment per batch, and the job's
  `recorded` hook runs once.
- On a one-request-at-a-time server (`max_concurrency` 1, the embedded llama.cpp), jobs that both have claimable
  rows share its time by their `turn_share`, in turns of at least TURN_SECONDS × share (`_my_turn`): judging
  keeps pace with generation instead of starting only when generation is over. A driver whose turn is over
  stops claiming, and its `work` sends the other job's message (`pass_the_turn`).
- Limits belong to the provider's account (server + key variable, `Endpoint.account`): every HTTP request,
  including each digit request of a digit-by-digit verdict, takes a permit. Requests and tokens per minute are
  paced per account: each process reserves chunks of the account's time from its `AccountPace` row (shared by
  every process) and spaces its own requests inside them. The replies' `x-ratelimit-remaining-*` and
  `x-ratelimit-reset-*` headers hold new requests until the reset when what remains would not cover the
  requests already in flight, and a 429's `Retry-After` holds them too; 429s are counted per experiment.
- Retries (429, 5xx, timeouts, connection errors, malformed replies) back off with jitter, the lease renewed;
  leases of rows still held are renewed as a heartbeat, and a killed worker's rows come back through
  `expire_leases` when their lease ends. A stopping worker gives back at once the rows whose request has not
  started, lets the others finish, records them, and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import hashlib
import json
import logging
import os
import queue
import random
import re
import ssl
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx2
import openai
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Count, F, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest
from django.db.utils import Error as DatabaseFault
from django.utils import timezone

from . import prompting
from .experiments.status import cancel
from .models import AccountPace, Endpoint, Experiment, LeasedWork, MissingApiKey, UndeclaredKeyVariable

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
ERROR_TEXT_LIMIT = 2000  # provider error bodies are stored truncated, and shown as text
TICK_SECONDS = 0.2  # how often a driver looks at the worker's shutdown flag and its leases while it waits
CONNECTIONS_PER_CLIENT = 50  # requests in flight per HTTP connection pool (see _Process.client)
PACE_CHUNK_SECONDS = 1.0  # how much of an account's time a process reserves at once (at least one request's)


@dataclass(frozen=True)
class Claim:
    row_id: int
    token: uuid.UUID
    start_at: datetime  # when it was claimed


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
    experiment_field: str  # the lookup from a row to its experiment (for budgets and 429 counts)
    turn_share: float = 1.0  # its share of a one-at-a-time server's time when other jobs wait too
    order: tuple[str, ...]  # the order rows are claimed in
    related: tuple[str, ...]  # select_related of a claimed row: everything `prepare` and `ask` read

    def pending(self, endpoint_id: int) -> QuerySet:
        """The endpoint's claimable rows (ordered by `order`)."""
        raise NotImplementedError

    def may_claim(self, endpoint: Endpoint) -> bool:
        """Whether rows of this job may start on the endpoint's server now (caller holds the server lock)."""
        return True

    def prepare(self, rows: list[LeasedWork]) -> None:
        """Compute on the claimed rows what `ask` needs from the database (runs outside the event loop)."""

    async def ask(self, calls: Calls, row: LeasedWork) -> Answer:
        raise NotImplementedError

    def recorded(self, row_ids: list[int]) -> None:
        """Called inside the transaction that recorded these rows done (defer with on_commit what must wait)."""

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


def _attribute(row: LeasedWork, lookup: str):
    """Follow a `a__b__c` lookup on a loaded row (the last part as its `_id` when it is a foreign key)."""
    *path, last = lookup.split("__")
    target = row
    for part in path:
        target = getattr(target, part)
    return getattr(target, f"{last}_id", None) or getattr(target, last)


def _follow(row: LeasedWork, lookup: str):
    """The object at the end of a `a__b__c` lookup on a loaded row."""
    target = row
    for part in lookup.split("__"):
        target = getattr(target, part)
    return target


def row_endpoint(job: Job, row: LeasedWork) -> Endpoint:
    return _follow(row, job.endpoint_field)


def _lease(endpoint: Endpoint) -> timedelta:
    # The lease must outlast a request that is still legitimately in flight, or the reconciler would hand
    # the row out twice (harmless for the result, but a wasted call). Held rows are renewed as a heartbeat.
    return timedelta(seconds=max(settings.SLOT_LEASE_SECONDS, endpoint.timeout_seconds + 5))


def reset(rows: QuerySet, *, fresh_attempts: bool = False) -> int:
    """Put rows back in line, unclaimed: for a lease that ended, a claim given back, or (`fresh_attempts`) a
    failed row a researcher retries, which also forgets its attempts and error. The one place that says what
    "pending again" means for leased work."""
    fields: dict[str, Any] = {"status": PENDING, "claim_token": None, "lease_until": None}
    if fresh_attempts:
        fields.update(attempts=0, error="", error_kind="")
    return rows.update(**fields)


# --- claiming (on the driver's home thread) ------------------------------------------------------------------

def _lock_server(endpoint: Endpoint) -> None:
    """Serialise claims on one server across every process until the transaction ends."""
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.blake2b(endpoint.base_url.encode(), digest_size=8).digest(), "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    # SQLite: the IMMEDIATE transaction already holds the database's write lock.


Pairs = list[tuple[int, uuid.UUID]]  # (row id, claim token)


def live_requests(endpoint: Endpoint, now: datetime, answered: dict[str, Pairs] | None = None) -> int:
    """Rows in flight on the endpoint's server, by every job (live leases), less `answered`: per job name, the
    claims whose answer a driver holds but has not recorded yet (their requests are over; recording them is
    not held up by the claim that reuses their places)."""
    server = endpoint.same_server()
    total = 0
    for job in _jobs.values():
        rows = job.model.objects.filter(**{f"{job.endpoint_field}__in": server}, status=RUNNING, lease_until__gt=now)
        pairs = (answered or {}).get(job.name)
        if pairs:
            rows = rows.exclude(_claims_in(job, pairs))
        total += rows.count()
    return total


def _claims_in(job: Job, pairs: Pairs) -> Q | RawSQL:
    """Rows of `job` that carry one of these (id, claim token) pairs."""
    if connection.vendor == "postgresql":
        # One array parameter each, not an OR per pair: a claim may exclude hundreds. (S608/S611: the text
        # holds only the model's quoted table name; the ids and tokens are parameters.)
        table = connection.ops.quote_name(job.model._meta.db_table)
        ids, tokens = zip(*pairs, strict=True)
        pair_in = f"({table}.id, {table}.claim_token) IN (SELECT * FROM unnest(%s::bigint[], %s::uuid[]))"  # noqa: S608
        return RawSQL(pair_in, [list(ids), list(tokens)], output_field=BooleanField())  # noqa: S611
    held = Q()
    for pk, token in pairs:
        held |= Q(pk=pk, claim_token=token)
    return held


def _within_budget() -> Q:
    return Q(budget_usd__isnull=True) | Q(spent_usd__lt=F("budget_usd"))


def _claimable(job: Job, endpoint_id: int) -> QuerySet:
    experiments = Experiment.objects.filter(_within_budget())
    return job.pending(endpoint_id).filter(**{f"{job.experiment_field}__in": experiments})


# How far back a one-at-a-time server's time is shared out between jobs, and how long a turn lasts at least
# per unit of turn_share (see `_my_turn`).
TURN_WINDOW = timedelta(minutes=5)
TURN_SECONDS = 30


def _waiting_on_server(job: Job, server: QuerySet) -> list[int]:
    """The server's endpoints (ids) on which `job` has a claimable row."""
    return [endpoint_id for endpoint_id in server.values_list("pk", flat=True)
            if _claimable(job, endpoint_id).exists()]


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
    So a turn, once taken (`turn_started`, time.monotonic() when the driver began), lasts at least
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
    """Send a work message for each other job waiting on the endpoint's server: a driver that stopped because
    its turn was over must wake whoever's turn it is now (the reconciler would, but only within
    RECONCILE_EVERY seconds, while the one-at-a-time server sat idle)."""
    if endpoint.max_concurrency != 1:
        return
    server = endpoint.same_server()
    for other in _jobs.values():
        if other is not job:
            for endpoint_id in _waiting_on_server(other, server):
                other.send(endpoint_id)


@dataclass
class _Claimed:
    rows: list[LeasedWork]
    full: bool  # the server had fewer free places than were wanted
    dry: bool  # fewer rows were pending (or the job may not start now) than could have been claimed


def _claim(job: Job, endpoint: Endpoint, want: int, answered: Pairs = (), turn_started: float | None = None
           ) -> _Claimed:
    """Claim up to `want` of the endpoint's next rows; `answered` are this driver's claims whose requests are
    over but not recorded yet. Caller is inside a transaction."""
    _lock_server(endpoint)
    if not job.may_claim(endpoint) or not _my_turn(job, endpoint, turn_started):
        return _Claimed([], full=False, dry=True)
    now = timezone.now()
    places = min(want, endpoint.max_concurrency - live_requests(endpoint, now, {job.name: answered}))
    if places <= 0:
        return _Claimed([], full=True, dry=False)
    token = uuid.uuid4()
    # SKIP LOCKED keeps two claimers off the same rows without waiting for each other (PostgreSQL; SQLite's
    # IMMEDIATE transactions serialise anyway).
    next_rows = _claimable(job, endpoint.pk).select_for_update(skip_locked=True, of=("self",)).values("pk")[:places]
    if connection.vendor == "postgresql":
        # Not `id IN (subquery)`: PostgreSQL may run that as a semi-join that rescans the subquery for every
        # candidate row, and each rescan locks and returns another row (measured: N asked, all taken).
        # ARRAY(subquery) is an init plan, run once. (S611: the text is the ORM's own compiled query; its
        # values stay parameters.)
        sql, params = next_rows.query.sql_with_params()
        table = connection.ops.quote_name(job.model._meta.db_table)
        chosen = RawSQL(f"{table}.id = ANY(ARRAY({sql}))", params, output_field=BooleanField())  # noqa: S611
    else:
        chosen = Q(pk__in=next_rows)
    taken = job.model.objects.filter(chosen, status=PENDING).update(
        status=RUNNING, claim_token=token, claimed_at=now, lease_until=now + _lease(endpoint),
        attempts=F("attempts") + 1,
    )
    rows = []
    if taken:
        rows = list(job.model.objects.select_related(*job.related).filter(claim_token=token).order_by(*job.order))
        job.prepare(rows)
    return _Claimed(rows, full=places < want, dry=taken < places)


def claim_next(job: Job, endpoint_id: int) -> Claim | None:
    """Claim the endpoint's next row in this thread, or None when none is pending or its server is full (for
    tests and tools; workers claim in batches)."""
    with transaction.atomic():
        claimed = _claim(job, Endpoint.objects.get(pk=endpoint_id), 1)
    if not claimed.rows:
        return None
    row = claimed.rows[0]
    return Claim(row.pk, row.claim_token, row.claimed_at)


# --- recording (on the driver's recording thread) -------------------------------------------------------------

@dataclass
class _Outcome:
    """What became of one held row, recorded at the driver's next step."""

    row: LeasedWork
    kind: str  # "done", "failed", "give_back" or "renew"
    answer: Answer | None = None
    latency_ms: int = 0
    failure: Failure | None = None
    attempts: int = 0
    delay: float = 0.0  # renew: the backoff the new lease must cover
    kept: asyncio.Future | None = None  # renew: set to whether the claim was still held


USAGE_FIELDS = ("served_model", "system_fingerprint", "prompt_tokens", "completion_tokens")


def _record(job: Job, endpoint: Endpoint, outcomes: list[_Outcome], rate_limited: Counter,
            heartbeat: list[LeasedWork]) -> tuple[set[int], set[int]]:
    """Write the outcomes of rows whose claim still holds, charge their cost, count 429s and renew the leases
    of rows still held. Returns (ids recorded done or failed, ids renewed). Caller is inside a transaction."""
    now = timezone.now()
    lease = _lease(endpoint)
    if outcomes:
        held = {(o.row.pk, o.row.claim_token) for o in outcomes}
        locked = job.model.objects.select_for_update().filter(
            pk__in=[pk for pk, _ in held], claim_token__in={token for _, token in held}, status=RUNNING,
        ).values_list("pk", "claim_token")
        still = {pk for pk, token in locked if (pk, token) in held}
    else:
        still = set()
    mine = [o for o in outcomes if o.row.pk in still]
    done = [o for o in mine if o.kind == "done"]
    _update_each(job.model, [
        {**o.answer.fields, **{name: getattr(o.answer.usage, name) for name in USAGE_FIELDS}, "pk": o.row.pk,
         "latency_ms": o.latency_ms, "status": DONE, "error_kind": "", "error": "", "lease_until": None,
         "finished_at": now}
        for o in done
    ])
    failed = [o for o in mine if o.kind == "failed"]
    _update_each(job.model, [
        {"pk": o.row.pk, "status": FAILED, "error_kind": o.failure.kind, "lease_until": None, "finished_at": now,
         "error": ((f"gave up after {o.attempts} attempts: " if o.failure.retryable else "")
                   + o.failure.message)[:ERROR_TEXT_LIMIT + 100]}
        for o in failed
    ])
    given_back = [o.row.pk for o in mine if o.kind == "give_back"]
    if given_back:
        reset(job.model.objects.filter(pk__in=given_back))
    renewed = set()
    for o in mine:
        if o.kind == "renew":
            job.model.objects.filter(pk=o.row.pk).update(
                lease_until=now + lease + timedelta(seconds=o.delay), attempts=F("attempts") + 1
            )
            renewed.add(o.row.pk)
    if heartbeat:
        job.model.objects.filter(
            pk__in=[row.pk for row in heartbeat], claim_token__in={row.claim_token for row in heartbeat},
            status=RUNNING,
        ).update(lease_until=Greatest(F("lease_until"), now + lease))
    _charge(job, endpoint, done, rate_limited)
    if done:
        job.recorded([o.row.pk for o in done])
    return {o.row.pk for o in done + failed}, renewed


def _update_each(model: type[LeasedWork], rows: list[dict]) -> None:
    """Write each row's own values (dicts of field name → value with the same names, and "pk"): on PostgreSQL
    one `UPDATE … FROM unnest(…)` with one array parameter per column, elsewhere one UPDATE per row (SQLite
    serialises writers anyway). Not `bulk_update` (its CASE per field and row cost ~0.5 s of Python for 50
    rows) nor a VALUES list (the driver parses a parameter per row and field: 0.2 s for 500 rows)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            values = dict(row)
            model.objects.filter(pk=values.pop("pk")).update(**values)
        return
    fields = [model._meta.get_field(name) for name in rows[0] if name != "pk"]
    instances = [model(**row) for row in rows]
    params = [[row["pk"] for row in rows]] + [
        [field.get_db_prep_save(getattr(instance, field.attname), connection) for instance in instances]
        for field in fields
    ]
    arrays = ", ".join(["%s::bigint[]", *(f"%s::{field.cast_db_type(connection)}[]" for field in fields)])
    quote = connection.ops.quote_name
    columns = [quote(field.column) for field in fields]
    # S608: the text holds only the model's quoted table and column names; every value is a parameter.
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "  # noqa: S608
        f"FROM unnest({arrays}) AS v(id, {', '.join(columns)}) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _charge(job: Job, endpoint: Endpoint, done: list[_Outcome], rate_limited: Counter) -> None:
    """Add the step's cost and 429s to each experiment (one UPDATE each); stop an experiment once its budget is
    reached."""
    costs: dict[int, Decimal] = defaultdict(Decimal)
    for o in done:
        usage = o.answer.usage
        costs[_attribute(o.row, job.experiment_field)] += endpoint.cost(usage.prompt_tokens or 0,
                                                                        usage.completion_tokens or 0)
    for experiment_id in sorted({*(pk for pk, cost in costs.items() if cost), *rate_limited}):
        cost = costs.get(experiment_id, Decimal(0))
        Experiment.objects.filter(pk=experiment_id).update(
            spent_usd=F("spent_usd") + cost, rate_limited=F("rate_limited") + rate_limited.get(experiment_id, 0)
        )
        if cost:
            _stop_if_over_budget(experiment_id)


def _stop_if_over_budget(experiment_id: int) -> None:
    over = Experiment.objects.filter(pk=experiment_id, budget_usd__isnull=False, spent_usd__gte=F("budget_usd"))
    experiment = over.filter(status=Experiment.Status.RUNNING).first()
    if experiment is not None:
        cancel(experiment)
        Experiment.objects.filter(pk=experiment_id).update(
            stop_reason=f"Budget of ${experiment.budget_usd:.2f} reached (spent ${experiment.spent_usd:.4f}); "
            "no more requests are sent. Raise the budget and resume to continue."
        )


def _claim_step(job: Job, endpoint: Endpoint, want: int, answered: Pairs, turn_started: float | None = None
                ) -> _Claimed:
    """A driver's claim, in its own transaction: committed at once, so its requests start while the answers
    that freed their places are still being recorded."""
    with transaction.atomic():
        return _claim(job, endpoint, want, answered, turn_started)


def _record_step(job: Job, endpoint: Endpoint, outcomes: list[_Outcome], rate_limited: Counter,
                 heartbeat: list[LeasedWork]) -> tuple[set[int], set[int]]:
    """A driver's recording, in its own transaction (see `_record`)."""
    with transaction.atomic():
        return _record(job, endpoint, outcomes, rate_limited, heartbeat)


# --- failures -------------------------------------------------------------------------------------------------

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
    raise exc  # a bug of ours, not the endpoint's: logged by the driver; the lease brings the row back


def backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half to full of the step), never sooner than Retry-After."""
    step = min(settings.GENERATION_BACKOFF_MAX_SECONDS, settings.GENERATION_BACKOFF_SECONDS * 2 ** (attempt - 1))
    delay = step * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def first_choice(completion):
    """The first choice of a completion, or MalformedReply."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise MalformedReply(f"no choices in reply: {str(completion)[:300]!r}")
    return choices[0]


# --- limits per account ------------------------------------------------------------------------------------

Db = Callable[..., Awaitable[Any]]  # runs a function on the driver's home thread: `await db(fn, *args)`


def _reserve(account: str, resource: str, seconds: float) -> tuple[float, float]:
    """Reserve `seconds` of the account's `resource` ("requests" or "tokens") capacity: the span from the
    moment nothing is reserved any more (or now). Every process reserves from the same row."""
    column = f"{resource}_free_at"
    with transaction.atomic():
        pace, _ = AccountPace.objects.select_for_update().get_or_create(account=account)
        start = max(time.time(), getattr(pace, column))
        AccountPace.objects.filter(pk=pace.pk).update(**{column: start + seconds})
    return start, start + seconds


class _Pacer:
    """One limit of one account (per minute) as this process sees it: spans of the account's time reserved in
    the database, spent locally one request at a time (a request of n units takes n × 60 / limit seconds)."""

    def __init__(self, account: str, resource: str, per_minute: int):
        self.account, self.resource, self.per_minute = account, resource, per_minute
        self.spacing = 60 / per_minute
        self.spans: list[list[float]] = []
        self.lock = asyncio.Lock()

    async def take(self, units: float, db: Db) -> float:
        """The moment a request of `units` may start."""
        need = units * self.spacing
        async with self.lock:
            start = None
            while need > 1e-9:
                if not self.spans:
                    seconds = max(need, PACE_CHUNK_SECONDS)
                    self.spans.append(list(await db(_reserve, self.account, self.resource, seconds)))
                span = self.spans[0]
                span[0] = max(span[0], time.time())  # time that passed unused is not saved up for a burst
                if span[0] >= span[1]:
                    self.spans.pop(0)
                    continue
                start = span[0] if start is None else start
                used = min(need, span[1] - span[0])
                span[0] += used
                need -= used
            return start if start is not None else time.time()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)?")
_UNIT_SECONDS = {"ms": 0.001, "h": 3600, "m": 60, "s": 1, None: 1}


def _duration(value: str | None) -> float | None:
    """OpenAI's reset headers: "1s", "6m0s", "59.32s", "20ms" (or plain seconds)."""
    if not value:
        return None
    parts = _DURATION.findall(value.strip())
    if not parts:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit or None] for number, unit in parts)


def _count(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class _Account:
    """What this process knows of one provider account's limits: its pacers, the requests and (estimated)
    tokens it has in flight there, and until when the provider's headers say to hold new requests."""

    def __init__(self, account: str):
        self.account = account
        self.requests: _Pacer | None = None
        self.tokens: _Pacer | None = None
        self.hold_until = 0.0
        self.in_flight = 0
        self.in_flight_tokens = 0

    def configure(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        if (self.requests and self.requests.per_minute) != requests_per_minute:
            self.requests = _Pacer(self.account, "requests", requests_per_minute) if requests_per_minute else None
        if (self.tokens and self.tokens.per_minute) != tokens_per_minute:
            self.tokens = _Pacer(self.account, "tokens", tokens_per_minute) if tokens_per_minute else None

    async def permit(self, tokens: int, db: Db) -> None:
        """Wait until a request of about `tokens` tokens may start."""
        while True:
            if self.hold_until > time.time():
                await asyncio.sleep(self.hold_until - time.time())
            start = time.time()
            if self.requests:
                start = max(start, await self.requests.take(1, db))
            if self.tokens:
                start = max(start, await self.tokens.take(tokens, db))
            if start > time.time():
                await asyncio.sleep(start - time.time())
            if self.hold_until <= time.time():  # else a reply meanwhile said to wait: wait, then take anew
                return

    def hold(self, seconds: float) -> None:
        self.hold_until = max(self.hold_until, time.time() + seconds)

    def observe(self, headers) -> None:
        """Slow down before a 429: when what the provider says remains would not cover what is already in
        flight, hold new requests until its window resets."""
        remaining, reset = _count(headers.get("x-ratelimit-remaining-requests")), \
            _duration(headers.get("x-ratelimit-reset-requests"))
        if remaining is not None and reset and remaining <= self.in_flight:
            self.hold(reset)
        remaining, reset = _count(headers.get("x-ratelimit-remaining-tokens")), \
            _duration(headers.get("x-ratelimit-reset-tokens"))
        if remaining is not None and reset and remaining <= self.in_flight_tokens:
            self.hold(reset)


def _account_limits(endpoint: Endpoint) -> tuple[int | None, int | None]:
    """The account's limits: the strictest of the current versions of every endpoint on it (this one's own when
    none is current), so two names on one key cannot each spend the whole allowance."""
    rows = Endpoint.objects.filter(base_url=endpoint.base_url, api_key_env=endpoint.api_key_env, is_current=True)
    figures = list(rows.values_list("requests_per_minute", "tokens_per_minute")) or [
        (endpoint.requests_per_minute, endpoint.tokens_per_minute)
    ]
    requests = [r for r, _ in figures if r]
    tokens = [t for _, t in figures if t]
    return (min(requests) if requests else None), (min(tokens) if tokens else None)


def estimated_tokens(request: dict) -> int:
    """Prompt + completion tokens a request may use, as the tokens-per-minute limit counts it."""
    if "messages" in request:
        prompt = prompting.estimate_tokens(request["messages"])
    else:
        prompt = len(request.get("prompt", "")) // prompting.CHARS_PER_TOKEN
    return prompt + (request.get("max_tokens") or 0)


class Calls:
    """The HTTP requests made for one row: each waits for the account's limits, is sent with the process's
    client for the endpoint, has its rate-limit headers read, and adds to the row's usage."""

    def __init__(self, process: _Process, endpoint: Endpoint, account: _Account, db: Db,
                 on_start: Callable[[], None] = lambda: None, on_rate_limited: Callable[[], None] = lambda: None):
        self.endpoint, self.usage = endpoint, Usage()
        self._process, self._account, self._db = process, account, db
        self._on_start, self._on_rate_limited = on_start, on_rate_limited

    async def chat(self, **request):
        """`chat.completions.create` with the endpoint's model."""
        return await self._send(lambda client: client.chat.completions.with_raw_response.create, request)

    async def completion(self, **request):
        """`completions.create` (raw text continuation) with the endpoint's model."""
        return await self._send(lambda client: client.completions.with_raw_response.create, request)

    async def _send(self, method, request: dict):
        client = self._process.client(self.endpoint)
        tokens = estimated_tokens(request)
        await self._account.permit(tokens, self._db)
        self._on_start()
        account = self._account
        account.in_flight += 1
        account.in_flight_tokens += tokens
        try:
            try:
                raw = await method(client)(model=self.endpoint.model, **request)
            finally:
                account.in_flight -= 1
                account.in_flight_tokens -= tokens
        except openai.APIStatusError as exc:
            account.observe(exc.response.headers)
            if exc.status_code == 429:
                self._on_rate_limited()
                account.hold(_retry_after(exc.response) or 0.0)
            raise
        account.observe(raw.headers)
        completion = raw.parse()
        self.usage.add(completion)
        return completion


# --- the process's event loop ------------------------------------------------------------------------------

class _Process:
    """The event loop of this worker process (a daemon thread), with what it shares between drivers: one
    `openai` client per endpoint configuration, the accounts' limits, the running drivers."""

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.clients: dict[tuple, list[openai.AsyncOpenAI]] = {}
        self.turn = 0  # which of an endpoint's clients takes the next request
        self.tls: ssl.SSLContext | None = None
        self.accounts: dict[str, _Account] = {}
        self.drivers: dict[tuple[str, int], _Driver] = {}
        self.active = 0  # requests not over, of every driver of this process
        self.lock = threading.Lock()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="call-engine").start()

    def client(self, endpoint: Endpoint) -> openai.AsyncOpenAI:
        """A client (and connection pool) for an endpoint configuration, in turn: one per
        CONNECTIONS_PER_CLIENT of the places this process may fill, because the HTTP pool looks at each of its
        connections whenever it places a request or gets one back (one pool of 500 cost a fifth of the loop's
        time at 500 in flight). Retries are ours (max_retries=0): they renew the lease and respect the
        account's limits. Redirects are not followed: a server must not send our key on to another host. The
        pools are unbounded: the engine bounds what is in flight."""
        api_key = endpoint.read_api_key()
        clients = self.clients.setdefault((endpoint.base_url, api_key, endpoint.timeout_seconds), [])
        places = min(endpoint.max_concurrency, settings.ENGINE_MAX_IN_FLIGHT)
        while len(clients) < -(-places // CONNECTIONS_PER_CLIENT):
            clients.append(openai.AsyncOpenAI(
                base_url=endpoint.base_url, api_key=api_key, timeout=endpoint.timeout_seconds, max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(
                    follow_redirects=False, verify=self._tls(),
                    limits=httpx2.Limits(max_connections=None, max_keepalive_connections=None),
                ),
            ))
        self.turn += 1
        return clients[self.turn % len(clients)]

    def _tls(self) -> ssl.SSLContext:
        """One TLS context for every client of the process (each takes ~40 ms to build, on the loop)."""
        if self.tls is None:
            self.tls = httpx2.create_ssl_context()
        return self.tls

    def account(self, endpoint: Endpoint, limits: tuple[int | None, int | None]) -> _Account:
        account = self.accounts.setdefault(endpoint.account, _Account(endpoint.account))
        account.configure(*limits)
        return account


_process_lock = threading.Lock()
_current: _Process | None = None


def _the_process() -> _Process:
    global _current
    with _process_lock:
        if _current is None or _current.pid != os.getpid():  # none yet, or a forked child's copy
            _current = _Process()
        return _current


class _Home:
    """Runs a driver's database work on one thread, its own connection: the thread that started the driver
    (which waits for it anyway), or the driver's recording thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.work: queue.SimpleQueue = queue.SimpleQueue()

    async def run(self, fn: Callable, *args):
        future = self.loop.create_future()
        self.work.put((fn, args, future))
        return await future

    def serve(self, until: concurrent.futures.Future):
        """Run database work until `until` (the driver) is done; returns its result."""
        until.add_done_callback(lambda _: self.work.put(None))
        self._serve()
        return until.result()

    def serve_until_stopped(self) -> None:
        """A recording thread's body: run database work until `stop`, then give the connection back."""
        try:
            self._serve()
        finally:
            connection.close()

    def stop(self) -> None:
        self.work.put(None)

    def _serve(self) -> None:
        while (item := self.work.get()) is not None:
            fn, args, future = item
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the driver, which decides
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()  # e.g. PostgreSQL restarted: reconnect next time
                self.loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self.loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result, exc: BaseException | None) -> None:
    if not future.done():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class _Driver:
    """Keeps one endpoint's places filled with one job's rows, in this process's event loop.

    Two loops share the rows: the claimer claims as places free (each claim its own transaction, committed at
    once) and the recorder writes the answers in batches (its own transactions, on its own thread and
    connection when it can), so a slow commit never holds new requests and claiming and recording overlap.
    A row answered but not yet recorded gives up its place at once: the claim tells the database which of its
    claims are over (`live_requests`)."""

    def __init__(self, process: _Process, job: Job, endpoint_id: int, *, claiming: bool, budget_seconds: float):
        self.process, self.job, self.endpoint_id = process, job, endpoint_id
        self.home = _Home(process.loop)
        self.records = self.home  # the recorder's thread: its own one when the driver runs outside a transaction
        self.claiming = claiming
        self.deadline = time.monotonic() + budget_seconds
        self.turn_started = time.monotonic()  # its turn on a one-at-a-time server (`_my_turn`)
        self.poked = False  # a message arrived while this driver ran: look for work again before exiting
        self.hand_over = False  # stopped for its time budget with work left: the caller sends a fresh message
        self.held: dict[int, LeasedWork] = {}  # claimed and not recorded yet (their leases are renewed)
        self.active: set[int] = set()  # held rows whose requests are not over: they take the server's places
        self.started: dict[int, bool] = {}  # row id → its current attempt has sent a request
        self.tasks: dict[int, asyncio.Task] = {}
        self.outbox: list[_Outcome] = []
        self.first_outcome_at = 0.0
        self.freed_at: float | None = None  # when the first place freed since the last claim
        self.rate_limited: Counter = Counter()
        self.handled = 0
        self.stopped = False
        self.wake: asyncio.Event | None = None  # the claimer's: a place freed, a row recorded, a message
        self.posted: asyncio.Event | None = None  # the recorder's: an outcome to record

    # Created in the loop: asyncio objects belong to the loop they are made in.
    async def run(self, seed: list[Claim]) -> int:
        self.wake, self.posted = asyncio.Event(), asyncio.Event()
        self.endpoint = await self.home.run(partial(Endpoint.objects.get, pk=self.endpoint_id))
        self.lease_seconds = _lease(self.endpoint).total_seconds()
        self.account = self.process.account(self.endpoint, await self.home.run(_account_limits, self.endpoint))
        # A claim batch of at least an eighth of the places (or whatever freed in ENGINE_BATCH_SECONDS): a
        # claim costs a handful of statements, whatever its size.
        self.batch = max(1, min(self.endpoint.max_concurrency, settings.ENGINE_MAX_IN_FLIGHT) // 8)
        if seed:
            self._start(await self.home.run(_load_claims, self.job, seed))
        recorder = asyncio.create_task(self._recorder())
        try:
            await self._claimer()
        finally:
            self.stopped = True
            self.posted.set()
            await recorder
        return self.handled

    async def _claimer(self) -> None:
        dry, full_until = False, 0.0
        while True:
            if worker_stopping():
                self.claiming = False
                self._give_back_unstarted()
            if self.claiming and time.monotonic() > self.deadline:
                self.claiming, self.hand_over = False, True
            if self.poked:
                self.poked, dry, full_until = False, False, 0.0
            # A server full of other work is asked again once a place of this driver's own frees, or after a
            # second (another process's may have).
            full = time.monotonic() < full_until
            want = self._want() if self.claiming and not dry and not full else 0
            if want > 0 and self._batch_ready(want):
                claimed = await self._claim(want)
                if claimed is not None:
                    dry = claimed.dry
                    full_until = time.monotonic() + 1 if claimed.full else 0.0
                    self._start(claimed.rows)
                continue
            if not self.held and not self.outbox and not self.rate_limited and self._may_exit(dry):
                return
            await self._wait(want)

    def _want(self) -> int:
        """Rows to claim: the places free here (rows answered but not yet recorded have left theirs)."""
        local = self.endpoint.max_concurrency - len(self.active)
        process = settings.ENGINE_MAX_IN_FLIGHT - self.process.active
        return max(0, min(local, process))

    def _batch_ready(self, want: int) -> bool:
        return (want >= self.batch or not self.active or self.freed_at is None
                or time.monotonic() - self.freed_at >= settings.ENGINE_BATCH_SECONDS)

    def _may_exit(self, dry: bool) -> bool:
        """Nothing held and nothing left to claim: exit, unless a message arrived meanwhile. Decided under the
        process lock, against which `work` pokes a running driver."""
        if self.claiming and not dry:
            return False
        key = (self.job.name, self.endpoint_id)
        with self.process.lock:
            if self.poked and self.claiming:
                return False
            if self.process.drivers.get(key) is self:
                del self.process.drivers[key]
            return True

    async def _wait(self, want: int) -> None:
        timeout = TICK_SECONDS
        if want > 0 and self.freed_at is not None:  # places free, too few for a batch yet
            timeout = max(0.0, min(timeout, self.freed_at + settings.ENGINE_BATCH_SECONDS - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()

    async def _claim(self, want: int) -> _Claimed | None:
        answered = [(pk, row.claim_token) for pk, row in self.held.items() if pk not in self.active]
        self.freed_at = None
        try:
            return await self.home.run(_claim_step, self.job, self.endpoint, want, answered, self.turn_started)
        except DatabaseFault as exc:
            log.warning("%s on endpoint %s: database error while claiming, retrying in 1 s: %s", self.job.name,
                        self.endpoint_id, exc)
            await asyncio.sleep(1)
            return None

    async def _recorder(self) -> None:
        next_heartbeat = time.monotonic() + self.lease_seconds / 3
        while True:
            heartbeat = []
            if self.held and time.monotonic() > next_heartbeat:
                heartbeat = list(self.held.values())
                next_heartbeat = time.monotonic() + self.lease_seconds / 3
            if self.outbox or self.rate_limited or heartbeat:
                await self._gather()
                await self._record(heartbeat)
                continue  # outcomes that arrived meanwhile go at once
            if self.stopped:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.posted.wait(), TICK_SECONDS)
            self.posted.clear()

    async def _gather(self) -> None:
        """Gather outcomes into a batch while other requests of this driver are about to finish: a step per
        outcome would cost its statements per row."""
        if self.outbox and len(self.active) > 0:
            delay = self.first_outcome_at + settings.ENGINE_BATCH_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _record(self, heartbeat: list[LeasedWork]) -> None:
        outcomes, self.outbox = self.outbox, []
        rate_limited, self.rate_limited = self.rate_limited, Counter()
        try:
            recorded, renewed = await self.records.run(
                _record_step, self.job, self.endpoint, outcomes, rate_limited, heartbeat
            )
        except DatabaseFault as exc:
            # The database went away (a restart, a failover): keep what is to be recorded and try again; the
            # claim tokens make a repeated record harmless.
            log.warning("%s on endpoint %s: database error, retrying in 1 s: %s", self.job.name, self.endpoint_id,
                        exc)
            self.outbox = outcomes + self.outbox
            self.rate_limited += rate_limited
            await asyncio.sleep(1)
            return
        for o in outcomes:
            if o.kind == "renew":
                o.kept.set_result(o.row.pk in renewed)
            else:
                self._release(o.row.pk)
                self.handled += o.row.pk in recorded
        self.wake.set()

    def _start(self, rows: list[LeasedWork]) -> None:
        for row in rows:
            self.held[row.pk] = row
            self.active.add(row.pk)
            self.process.active += 1
            self.started[row.pk] = False
            self.tasks[row.pk] = asyncio.get_running_loop().create_task(self._run_row(row))

    def _leave(self, pk: int) -> None:
        """The row's request is over: its place is free."""
        if pk in self.active:
            self.active.remove(pk)
            self.process.active -= 1
            if self.freed_at is None:
                self.freed_at = time.monotonic()

    def _release(self, pk: int) -> None:
        self._leave(pk)
        self.held.pop(pk, None)
        self.started.pop(pk, None)
        self.tasks.pop(pk, None)

    def _post(self, outcome: _Outcome) -> None:
        if not self.outbox:
            self.first_outcome_at = time.monotonic()
        if outcome.kind != "renew" and not self._charged_against_budget(outcome):
            self._leave(outcome.row.pk)
        self.outbox.append(outcome)
        self.posted.set()
        self.wake.set()

    def _charged_against_budget(self, outcome: _Outcome) -> bool:
        """An answer that costs money in an experiment with a budget keeps its place until it is charged, so
        no request starts on money the budget may not have (the budget is checked when claiming)."""
        if outcome.kind != "done" or _follow(outcome.row, self.job.experiment_field).budget_usd is None:
            return False
        usage = outcome.answer.usage
        return self.endpoint.cost(usage.prompt_tokens or 0, usage.completion_tokens or 0) > 0

    def _give_back_unstarted(self) -> None:
        """Shutting down: rows whose request has not started (waiting for a permit, or in backoff) go back
        at once, so a live worker takes them instead of their waiting out the lease."""
        for pk, task in list(self.tasks.items()):
            if not self.started.get(pk) and not task.done():
                task.cancel()

    async def _run_row(self, row: LeasedWork) -> None:
        try:
            await self._attempts(row)
        except asyncio.CancelledError:
            self._post(_Outcome(row, "give_back"))
        except Exception:
            # A bug of ours, not the endpoint's: the row stays claimed and its lease brings it back.
            log.exception("%s row %s: unexpected error", self.job.name, row.pk)
            self._release(row.pk)

    async def _attempts(self, row: LeasedWork) -> None:
        attempts = row.attempts
        experiment_id = _attribute(row, self.job.experiment_field)

        def started() -> None:
            self.started[row.pk] = True

        def rate_limited() -> None:
            self.rate_limited[experiment_id] += 1

        while True:
            calls = Calls(self.process, self.endpoint, self.account, self.home.run, started, rate_limited)
            began = time.monotonic()
            try:
                answer = await self.job.ask(calls, row)
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not the endpoint's doing
                failure = classify(exc)
                if not failure.retryable or attempts >= settings.GENERATION_MAX_ATTEMPTS:
                    log.warning("%s row %s failed (%s): %s", self.job.name, row.pk, failure.kind,
                                failure.message[:200])
                    self._post(_Outcome(row, "failed", failure=failure, attempts=attempts))
                    return
                if worker_stopping():
                    self._post(_Outcome(row, "give_back"))  # don't hold a stopping worker through a backoff
                    return
                delay = backoff(attempts, failure.retry_after)
                kept = asyncio.get_running_loop().create_future()
                self._post(_Outcome(row, "renew", delay=delay, kept=kept))
                if not await kept:
                    self._release(row.pk)  # the lease expired and the row was handed out again: not ours
                    return
                attempts += 1
                self.started[row.pk] = False
                await asyncio.sleep(delay)
                continue
            self._post(_Outcome(row, "done", answer=answer, latency_ms=int((time.monotonic() - began) * 1000)))
            return


def _load_claims(job: Job, claims: list[Claim]) -> list[LeasedWork]:
    """The rows of claims still held (a claim lost meanwhile loads nothing)."""
    held = Q()
    for claim in claims:
        held |= Q(pk=claim.row_id, claim_token=claim.token)
    rows = list(job.model.objects.select_related(*job.related).filter(held, status=RUNNING).order_by(*job.order))
    job.prepare(rows)
    return rows


def _drive(driver: _Driver, seed: list[Claim]) -> int:
    recording = None
    # The recorder gets its own thread and connection, so recording overlaps claiming; not inside a caller's
    # transaction (a test, an inline command: another connection would not see it) nor on SQLite (one writer).
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        driver.records = _Home(driver.process.loop)
        recording = threading.Thread(target=driver.records.serve_until_stopped, daemon=True, name="call-recorder")
        recording.start()
    future = asyncio.run_coroutine_threadsafe(driver.run(seed), driver.process.loop)
    try:
        return driver.home.serve(future)
    finally:
        if recording is not None:
            driver.records.stop()
            recording.join()


def work(job: Job, endpoint_id: int, budget_seconds: float | None = None) -> int:
    """Run the endpoint's pending rows of `job` in this process's event loop until none can be claimed (or
    the time budget is spent: then a fresh message takes over). Returns rows handled; 0 at once when this
    process already drives the endpoint (it is told to look for new work before it stops)."""
    process = _the_process()
    key = (job.name, endpoint_id)
    budget = settings.GENERATION_MESSAGE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    with process.lock:
        running = process.drivers.get(key)
        if running is not None:
            running.poked = True
            if running.wake is not None:
                process.loop.call_soon_threadsafe(running.wake.set)
            return 0
        driver = process.drivers[key] = _Driver(process, job, endpoint_id, claiming=True, budget_seconds=budget)
    try:
        handled = _drive(driver, [])
    finally:
        with process.lock:
            if process.drivers.get(key) is driver:
                del process.drivers[key]
    if driver.hand_over:
        job.send(endpoint_id)  # keep messages short-lived (a Redis visibility timeout re-delivers)
    if handled:
        pass_the_turn(job, Endpoint.objects.get(pk=endpoint_id))
    return handled


def run_claim(job: Job, claim: Claim) -> None:
    """Run one claimed row through the engine and record its outcome (nothing when the claim was lost)."""
    process = _the_process()
    endpoint_id = job.model.objects.filter(pk=claim.row_id).values_list(job.endpoint_field, flat=True).get()
    _drive(_Driver(process, job, endpoint_id, claiming=False, budget_seconds=0), [claim])


def call(endpoint: Endpoint, ask: Callable[[Calls], Awaitable[Any]]) -> Any:
    """Make one unit of requests outside the queue (a bench judging rows it does not store) through the same
    clients and account limits as queued work; returns what `ask(calls)` returns."""
    process = _the_process()
    home = _Home(process.loop)

    async def run():
        account = process.account(endpoint, await home.run(_account_limits, endpoint))
        return await ask(Calls(process, endpoint, account, home.run))

    return home.serve(asyncio.run_coroutine_threadsafe(run(), process.loop))


# --- messages and reconciling -------------------------------------------------------------------------------

def dispatch(job: Job, rows: QuerySet) -> int:
    """Send work messages for each endpoint that has pending `rows`: one per process's worth of the server's
    free places (a process drives up to ENGINE_MAX_IN_FLIGHT requests), at least one. Extra messages are
    harmless: a process already driving the endpoint only takes the hint to look again."""
    counts = dict(
        rows.filter(status=PENDING).values_list(job.endpoint_field).annotate(n=Count("pk"))
        .values_list(job.endpoint_field, "n")
    )
    now = timezone.now()
    sent = 0
    for endpoint in Endpoint.objects.filter(pk__in=[pk for pk in counts if pk is not None]):
        places = min(counts[endpoint.pk], max(0, endpoint.max_concurrency - live_requests(endpoint, now)))
        for _ in range(-(-places // settings.ENGINE_MAX_IN_FLIGHT)):
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
    returned = reset(expired)
    if returned or failed:
        log.info("reconcile %s: %d expired leases returned, %d failed", job.name, returned, failed)
    return returned, failed


def release_all(job: Job) -> int:
    """Return every running row of `job` to pending at once, lease or not. Only for a process that knows no
    worker is running (the embedded default before it starts its one worker): otherwise the work a stopped
    run was doing would wait out its lease (5 minutes) while a one-at-a-time server sits idle."""
    return reset(job.model.objects.filter(status=RUNNING))
