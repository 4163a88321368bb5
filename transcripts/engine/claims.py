"""Claiming rows with a lease (on the driver's home thread), sharing a one-at-a-time server's time between
jobs, and the messages and reconciling that bring rows to a driver."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Count, F, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..models import CallBatch, Endpoint, Experiment, LeasedWork
from .jobs import FAILED, PENDING, RUNNING, Claim, Job, jobs, lease_length, reset

log = logging.getLogger(__name__)


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
    for job in jobs():
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


def claimable(job: Job, endpoint_id: int) -> QuerySet:
    """The endpoint's pending rows of `job` in experiments still within budget (requests and Batch API alike)."""
    experiments = Experiment.objects.filter(_within_budget())
    return job.pending(endpoint_id).filter(**{f"{job.experiment_field}__in": experiments})


# How far back a one-at-a-time server's time is shared out between jobs, and how long a turn lasts at least
# per unit of turn_share (see `my_turn`).
TURN_WINDOW = timedelta(minutes=5)
TURN_SECONDS = 30


def _waiting_on_server(job: Job, server: QuerySet) -> list[int]:
    """The server's endpoints (ids) on which `job` has a claimable row."""
    return [endpoint_id for endpoint_id in server.values_list("pk", flat=True)
            if claimable(job, endpoint_id).exists()]


def _server_seconds(job: Job, server: QuerySet, since: datetime) -> float:
    """Seconds the server spent on `job`'s rows that finished since `since`."""
    used = job.model.objects.filter(**{f"{job.endpoint_field}__in": server}, finished_at__gte=since).aggregate(
        ms=Sum("latency_ms"))["ms"]
    return (used or 0) / 1000


def my_turn(job: Job, endpoint: Endpoint, turn_started: float | None = None) -> bool:
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
    others = [other for other in jobs() if other is not job and _waiting_on_server(other, server)]
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
    for other in jobs():
        if other is not job:
            for endpoint_id in _waiting_on_server(other, server):
                other.send(endpoint_id)


@dataclass
class Claimed:
    rows: list[LeasedWork]
    full: bool  # the server had fewer free places than were wanted
    dry: bool  # fewer rows were pending (or the job may not start now) than could have been claimed


def _claim(job: Job, endpoint: Endpoint, want: int, answered: Pairs = (), turn_started: float | None = None
           ) -> Claimed:
    """Claim up to `want` of the endpoint's next rows; `answered` are this driver's claims whose requests are
    over but not recorded yet. Caller is inside a transaction."""
    _lock_server(endpoint)
    if not job.may_claim(endpoint) or not my_turn(job, endpoint, turn_started):
        return Claimed([], full=False, dry=True)
    now = timezone.now()
    places = min(want, endpoint.max_concurrency - live_requests(endpoint, now, {job.name: answered}))
    if places <= 0:
        return Claimed([], full=True, dry=False)
    token = uuid.uuid4()
    # SKIP LOCKED keeps two claimers off the same rows without waiting for each other (PostgreSQL; SQLite's
    # IMMEDIATE transactions serialise anyway).
    next_rows = claimable(job, endpoint.pk).select_for_update(skip_locked=True, of=("self",)).values("pk")[:places]
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
        status=RUNNING, claim_token=token, claimed_at=now, lease_until=now + lease_length(endpoint),
        attempts=F("attempts") + 1,
    )
    rows = []
    if taken:
        rows = list(job.model.objects.select_related(*job.related).filter(claim_token=token).order_by(*job.order))
        job.prepare(rows)
    return Claimed(rows, full=places < want, dry=taken < places)


def claim_next(job: Job, endpoint_id: int) -> Claim | None:
    """Claim the endpoint's next row in this thread, or None when none is pending or its server is full (for
    tests and tools; workers claim in batches)."""
    with transaction.atomic():
        claimed = _claim(job, Endpoint.objects.get(pk=endpoint_id), 1)
    if not claimed.rows:
        return None
    row = claimed.rows[0]
    return Claim(row.pk, row.claim_token, row.claimed_at)


def claim_step(job: Job, endpoint: Endpoint, want: int, answered: Pairs, turn_started: float | None = None
                ) -> Claimed:
    """A driver's claim, in its own transaction: committed at once, so its requests start while the answers
    that freed their places are still being recorded."""
    with transaction.atomic():
        return _claim(job, endpoint, want, answered, turn_started)


def load_claims(job: Job, claims: list[Claim]) -> list[LeasedWork]:
    """The rows of claims still held (a claim lost meanwhile loads nothing)."""
    held = Q()
    for claim in claims:
        held |= Q(pk=claim.row_id, claim_token=claim.token)
    rows = list(job.model.objects.select_related(*job.related).filter(held, status=RUNNING).order_by(*job.order))
    job.prepare(rows)
    return rows


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
    wake_stalled_batches(job)
    return returned, failed


def wake_stalled_batches(job: Job) -> int:
    """Send a work message for each endpoint with an open Batch API batch of `job` that nobody looked at since
    it was due (its handler was killed, or the message lost): batch rows hold no lease to expire
    (engine/batches.py). Returns messages sent."""
    late = timezone.now() - timedelta(seconds=settings.SLOT_LEASE_SECONDS)
    endpoints = set(CallBatch.objects.filter(job=job.name, next_check_at__lt=late)
                    .open().values_list("endpoint_id", flat=True))
    for endpoint_id in sorted(endpoints):
        job.send(endpoint_id)
    return len(endpoints)


def release_all(job: Job) -> int:
    """Return every running row of `job` to pending at once, lease or not, except the rows of an open Batch API
    batch: those are the provider's until the batch is applied (given back, they would be submitted again in
    another batch). Only for a process that knows no worker is running (the embedded default before it starts
    its one worker): otherwise the work a stopped run was doing would wait out its lease (5 minutes) while a
    one-at-a-time server sits idle."""
    in_batches = CallBatch.objects.filter(job=job.name).open()
    return reset(job.model.objects.filter(status=RUNNING)
                 .exclude(claim_token__in=in_batches.values("claim_token")))
