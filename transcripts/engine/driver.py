"""A driver keeps one endpoint's places filled with one job's rows in the process's event loop; `work`,
`run_claim` and `call` are how a task, a tool or a bench starts one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseFault

from ..models import Endpoint, LeasedWork
from . import batches
from .calls import Calls, Process, the_process
from .claims import Claimed, claim_step, load_claims, pass_the_turn
from .failures import backoff, classify
from .home import Home
from .jobs import Claim, Job, attribute_of, lease_length, object_at, worker_stopping
from .limits import account_limits
from .recording import Outcome, record_step

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2  # how often a driver looks at the worker's shutdown flag and its leases while it waits


class Driver:
    """Keeps one endpoint's places filled with one job's rows, in this process's event loop.

    Two loops share the rows: the claimer claims as places free (each claim its own transaction, committed at
    once) and the recorder writes the answers in batches (its own transactions, on its own thread and
    connection when it can), so a slow commit never holds new requests and claiming and recording overlap.
    A row answered but not yet recorded gives up its place at once: the claim tells the database which of its
    claims are over (`live_requests`)."""

    def __init__(self, process: Process, job: Job, endpoint_id: int, *, claiming: bool, budget_seconds: float):
        self.process, self.job, self.endpoint_id = process, job, endpoint_id
        self.home = Home(process.loop)
        self.records = self.home  # the recorder's thread: its own one when the driver runs outside a transaction
        self.claiming = claiming
        self.deadline = time.monotonic() + budget_seconds
        self.turn_started = time.monotonic()  # its turn on a one-at-a-time server (`my_turn`)
        self.poked = False  # a message arrived while this driver ran: look for work again before exiting
        self.hand_over = False  # stopped for its time budget with work left: the caller sends a fresh message
        self.held: dict[int, LeasedWork] = {}  # claimed and not recorded yet (their leases are renewed)
        self.active: set[int] = set()  # held rows whose requests are not over: they take the server's places
        self.started: dict[int, bool] = {}  # row id → its current attempt has sent a request
        self.tasks: dict[int, asyncio.Task] = {}
        self.outbox: list[Outcome] = []
        self.first_outcome_at = 0.0
        self.freed_at: float | None = None  # when the first place freed since the last claim
        self.rate_limited: Counter = Counter()
        self.handled = 0
        self.stopped = False
        self.wake: asyncio.Event | None = None  # the claimer's: a place freed, a row recorded, a message
        self.posted: asyncio.Event | None = None  # the recorder's: an outcome to record
        self.recorder: asyncio.Task | None = None  # writes outcomes; ends by itself only once stopped

    # Created in the loop: asyncio objects belong to the loop they are made in.
    async def run(self, seed: list[Claim]) -> int:
        self.wake, self.posted = asyncio.Event(), asyncio.Event()
        self.endpoint = await self.home.run(partial(Endpoint.objects.get, pk=self.endpoint_id))
        self.lease_seconds = lease_length(self.endpoint).total_seconds()
        self.account = self.process.account(self.endpoint, await self.home.run(account_limits, self.endpoint))
        # A claim batch of an eighth of the places (or whatever freed in ENGINE_BATCH_SECONDS): a claim costs a
        # handful of statements, whatever its size, but loading and preparing its rows takes time per row, and
        # every row waits for the whole claim; so when a wave of answers frees hundreds of places at once, a
        # batch at a time starts the first requests sooner (one claim of 400 rows held them ~0.4 s).
        self.batch = max(1, min(self.endpoint.max_concurrency, settings.ENGINE_MAX_IN_FLIGHT) // 8)
        if seed:
            self._start(await self.home.run(load_claims, self.job, seed))
        self.recorder = asyncio.create_task(self._recorder())
        try:
            await self._claimer()
        finally:
            self.stopped = True
            self.posted.set()
            await self.recorder
        return self.handled

    async def _claimer(self) -> None:
        dry, full_until = False, 0.0
        while True:
            if self.recorder.done():  # it ends by itself only when stopped: a recorder that failed fails the driver
                self.recorder.result()
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
                claimed = await self._claim(min(want, self.batch))
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

    async def _claim(self, want: int) -> Claimed | None:
        answered = [(pk, row.claim_token) for pk, row in self.held.items() if pk not in self.active]
        self.freed_at = None
        try:
            return await self.home.run(claim_step, self.job, self.endpoint, want, answered, self.turn_started)
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
                record_step, self.job, self.endpoint, outcomes, rate_limited, heartbeat
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
            task = self.tasks[row.pk] = asyncio.get_running_loop().create_task(self._run_row(row))
            task.add_done_callback(partial(self._given_back_if_cancelled, row))

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

    def _post(self, outcome: Outcome) -> None:
        if not self.outbox:
            self.first_outcome_at = time.monotonic()
        if outcome.kind != "renew" and not self._charged_against_budget(outcome):
            self._leave(outcome.row.pk)
        self.outbox.append(outcome)
        self.posted.set()
        self.wake.set()

    def _charged_against_budget(self, outcome: Outcome) -> bool:
        """An answer that costs money in an experiment with a budget keeps its place until it is charged, so
        no request starts on money the budget may not have (the budget is checked when claiming)."""
        if outcome.kind != "done" or object_at(outcome.row, self.job.experiment_field).budget_usd is None:
            return False
        return outcome.answer.usage.cost(self.endpoint) > 0

    def _give_back_unstarted(self) -> None:
        """Shutting down: rows whose request has not started (waiting for a permit, or in backoff) go back
        at once, so a live worker takes them instead of their waiting out the lease."""
        for pk, task in list(self.tasks.items()):
            if not self.started.get(pk) and not task.done():
                task.cancel()

    def _given_back_if_cancelled(self, row: LeasedWork, task: asyncio.Task) -> None:
        """A row task cancelled by `_give_back_unstarted` goes back. Said here, not in the task: a task cancelled
        before its first step (claimed in the same tick the worker began to stop) never runs its own code, and
        its row, held for ever, kept the warm shutdown waiting."""
        if task.cancelled():
            self._post(Outcome(row, "give_back"))

    async def _run_row(self, row: LeasedWork) -> None:
        try:
            await self._attempts(row)
        except Exception:
            # A bug of ours, not the endpoint's: the row stays claimed and its lease brings it back.
            log.exception("%s row %s: unexpected error", self.job.name, row.pk)
            self._release(row.pk)

    async def _attempts(self, row: LeasedWork) -> None:
        attempts = row.attempts
        experiment_id = attribute_of(row, self.job.experiment_field)

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
                    self._post(Outcome(row, "failed", failure=failure, attempts=attempts))
                    return
                if worker_stopping():
                    self._post(Outcome(row, "give_back"))  # don't hold a stopping worker through a backoff
                    return
                delay = backoff(attempts, failure.retry_after)
                kept = asyncio.get_running_loop().create_future()
                self._post(Outcome(row, "renew", delay=delay, kept=kept))
                if not await kept:
                    self._release(row.pk)  # the lease expired and the row was handed out again: not ours
                    return
                attempts += 1
                self.started[row.pk] = False
                await asyncio.sleep(delay)
                continue
            self._post(Outcome(row, "done", answer=answer, latency_ms=int((time.monotonic() - began) * 1000)))
            return


def drive(driver: Driver, seed: list[Claim]) -> int:
    recording = None
    # The recorder gets its own thread and connection, so recording overlaps claiming; not inside a caller's
    # transaction (a test, an inline command: another connection would not see it) nor on SQLite (one writer).
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        driver.records = Home(driver.process.loop)
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
    budget = settings.GENERATION_MESSAGE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    if Endpoint.objects.filter(pk=endpoint_id, batch_api=True).exists():
        # The engine's batch mode: the same rows, claims and recording, sent through the Batch API.
        return batches.work(job, endpoint_id, budget)
    process = the_process()
    key = (job.name, endpoint_id)
    with process.lock:
        running = process.drivers.get(key)
        if running is not None:
            running.poked = True
            if running.wake is not None:
                process.loop.call_soon_threadsafe(running.wake.set)
            return 0
        driver = process.drivers[key] = Driver(process, job, endpoint_id, claiming=True, budget_seconds=budget)
    try:
        handled = drive(driver, [])
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
    process = the_process()
    endpoint_id = job.model.objects.filter(pk=claim.row_id).values_list(job.endpoint_field, flat=True).get()
    drive(Driver(process, job, endpoint_id, claiming=False, budget_seconds=0), [claim])


def call(endpoint: Endpoint, ask: Callable[[Calls], Awaitable[Any]]) -> Any:
    """Make one unit of requests outside the queue (a bench judging rows it does not store) through the same
    clients and account limits as queued work; returns what `ask(calls)` returns."""
    process = the_process()
    home = Home(process.loop)

    async def run():
        account = process.account(endpoint, await home.run(account_limits, endpoint))
        return await ask(Calls(process, endpoint, account, home.run))

    return home.serve(asyncio.run_coroutine_threadsafe(run(), process.loop))
