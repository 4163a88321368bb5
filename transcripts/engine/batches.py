"""Batch mode of the call engine: a batch endpoint's (`Endpoint.batch_api`) rows go as JSONL files through the
provider's Batch API (OpenAI's format: `/v1/files` with purpose "batch", `/v1/batches`, output and error files),
at its batch prices. The same jobs, claims, recording and failure rules as the engine's requests; only the
transport differs.

A batch is sized when it is claimed, within the provider's limits (batch_files.py): BATCH_MAX_REQUESTS requests
and BATCH_MAX_FILE_BYTES per file, and the account's queue of enqueued tokens (`Endpoint.batch_queue_tokens`),
which every open batch of the account holds its estimated prompt tokens of until it is applied.

Exactly once, whenever a worker dies (kill -9 included):
- A batch is one claim: its rows are claimed under one token, with no lease (a batch may take a day), and a
  `CallBatch` row made in the same transaction holds that token. The CallBatch, not a lease, brings them back.
- Each step is one transaction holding the CallBatch row's lock (`SKIP LOCKED`: one handler at a time, and
  a killed handler's lock ends with its connection), and records what the provider gave (file id, batch id)
  before the next step depends on it: preparing → upload the file, record its id → uploaded → create the batch,
  record its id → submitted → poll; once final, download the output and error files and apply them → applied.
- A step repeated after a kill is harmless: an upload not recorded leaves an unused file; a batch created
  but not recorded is found again by its metadata (the claim token) before another is created, so the same
  rows are never submitted twice; results are applied in the transaction that marks the batch applied, each
  row by its `custom_id` (the job's key) and only while it still carries the claim token (recording.py): a
  line naming anything else is ignored (batch_files.read_results).
- Rows without a good answer go the way failed calls go (failures.classify): an error file's request, or an
  answer missing from an expired, cancelled or failed batch, is retried (back in line, for the next batch)
  until the attempts run out; a terminal error (a 400) fails its row with the reason.
- A row whose answer needs a further request (the judge's text fallback when a reply has no logprobs) makes
  it directly, through the engine's usual requests; the batch answers the first.

Work messages drive it (`work`): each advances the endpoint's batches that are due and claims new ones, until
none is open or its time budget is spent (then it sends a fresh message). The reconciler sends a message for
batches nobody has looked at since they were due (claims.wake_stalled_batches), e.g. after their handler was killed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..experiments.status import cancel
from ..models import CallBatch, Endpoint, Experiment, LeasedWork, MissingApiKey, UndeclaredKeyVariable
from .batch_files import TooLarge, load_rows, queue_room, read_results, size_batch, write_file
from .calls import Calls, the_process
from .claims import claimable
from .failures import Failure, classify
from .home import Home
from .jobs import PENDING, RUNNING, Answer, Job, reset, worker_stopping
from .limits import account_limits
from .recording import Outcome, record_step

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

FINAL = {"completed", "expired", "cancelled", "failed"}  # a provider's batch states after which nothing changes
METADATA_KEY = "em_audit_claim"  # the batch's metadata names its claim: a batch created unrecorded is found again

_running: set[tuple[str, int]] = set()  # (job, endpoint) pairs this process is working on
_running_lock = threading.Lock()


def client(endpoint: Endpoint) -> openai.OpenAI:
    """The `openai` client for the endpoint's files and batches (redirects not followed, like every request).
    Retries are ours (`advance`): the client's own would create a second batch when a created one's reply was
    lost."""
    import openai

    return openai.OpenAI(
        base_url=endpoint.base_url, api_key=endpoint.read_api_key(), timeout=endpoint.timeout_seconds, max_retries=0,
        http_client=openai.DefaultHttpxClient(follow_redirects=False),
    )


# --- a work message -----------------------------------------------------------------------------------------

def work(job: Job, endpoint_id: int, budget_seconds: float) -> int:
    """Advance the endpoint's open batches of `job` and claim new ones until none is open (or the budget is
    spent: then a fresh message takes over). Returns rows recorded. 0 at once when this process already works
    on them."""
    key = (job.name, endpoint_id)
    with _running_lock:
        if key in _running:
            return 0
        _running.add(key)
    try:
        return _work(job, Endpoint.objects.get(pk=endpoint_id), budget_seconds)
    finally:
        with _running_lock:
            _running.discard(key)


def _work(job: Job, endpoint: Endpoint, budget_seconds: float) -> int:
    deadline = time.monotonic() + budget_seconds
    handled = 0
    while True:
        for pk in _due(job, endpoint):
            handled += advance(job, endpoint, pk)
        if claim_batch(job, endpoint) is not None:
            continue
        open_batches = CallBatch.objects.filter(job=job.name, endpoint=endpoint).open()
        next_due = open_batches.order_by("next_check_at").values_list("next_check_at", flat=True).first()
        if next_due is None and _waiting_for_room(job, endpoint):
            next_due = timezone.now() + timedelta(seconds=settings.BATCH_POLL_SECONDS)
        if next_due is None or worker_stopping():
            return handled  # nothing open; or stopping (the reconciler sends a message for what is left)
        if time.monotonic() > deadline:
            job.send(endpoint.pk)  # keep messages short-lived (a Redis visibility timeout re-delivers)
            return handled
        wait = (next_due - timezone.now()).total_seconds()
        time.sleep(min(max(wait, 0.2), settings.BATCH_POLL_SECONDS, max(0.0, deadline - time.monotonic()) + 0.2))


def _waiting_for_room(job: Job, endpoint: Endpoint) -> bool:
    """Whether rows wait for the account's batch queue to empty (other endpoints' or jobs' batches hold it)."""
    room = queue_room(endpoint)
    return room is not None and room < endpoint.batch_queue_tokens and claimable(job, endpoint.pk).exists()


def _due(job: Job, endpoint: Endpoint) -> list[int]:
    return list(CallBatch.objects.filter(job=job.name, endpoint=endpoint, next_check_at__lte=timezone.now())
                .open().order_by("pk").values_list("pk", flat=True))


def claim_batch(job: Job, endpoint: Endpoint) -> CallBatch | None:
    """Claim the endpoint's next rows (in the job's order) into a new batch, as many as the provider's limits let
    one batch hold (batch_files.size_batch). While one of its batches is open, only a full one is claimed:
    answers that arrive meanwhile (judge rows as transcripts finish) wait to make a bigger batch rather than many
    small ones."""
    with transaction.atomic():
        if not job.may_claim(endpoint):
            return None
        ids = list(claimable(job, endpoint.pk).select_for_update(skip_locked=True, of=("self",))
                   .values_list("pk", flat=True)[:settings.BATCH_MAX_REQUESTS])
        busy = CallBatch.objects.filter(job=job.name, endpoint=endpoint).open()
        sized = size_batch(job, endpoint, ids)
        for experiment_id in sized.short - set(sized.costs):
            _stop_short_of_budget(experiment_id)
        if not sized.ids or (not sized.full and busy.exists()):
            return None
        token, now = uuid.uuid4(), timezone.now()
        # No lease: the rows of a batch are the CallBatch's (live_requests and expire_leases look only at leases).
        taken = job.model.objects.filter(pk__in=sized.ids, status=PENDING).update(
            status=RUNNING, claim_token=token, claimed_at=now, lease_until=None, attempts=F("attempts") + 1,
        )
        batch = CallBatch.objects.create(job=job.name, endpoint=endpoint, claim_token=token, requests=taken,
                                         tokens=sized.tokens,
                                         estimated_usd={str(pk): str(cost) for pk, cost in sized.costs.items()})
        batch.experiments.set(set(
            job.model.objects.filter(claim_token=token).values_list(job.experiment_field, flat=True)
        ))
    return batch


def _stop_short_of_budget(experiment_id: int) -> None:
    """Cancel a running experiment whose next request through the Batch API would pass its budget, once none of
    its batches is open (an open one may cost less than estimated, and leave room when it is billed)."""
    if CallBatch.objects.filter(experiments=experiment_id).open().exists():
        return
    experiment = Experiment.objects.filter(pk=experiment_id, status=Experiment.Status.RUNNING).first()
    if experiment is None:
        return
    cancel(experiment)
    Experiment.objects.filter(pk=experiment_id).update(
        stop_reason=f"Budget of ${experiment.budget_usd:.2f} reached: its next Batch API request may cost more than "
        f"the ${experiment.budget_usd - experiment.spent_usd:.4f} left (spent ${experiment.spent_usd:.4f}). Raise "
        "the budget and resume to continue.")


def advance(job: Job, endpoint: Endpoint, pk: int) -> int:
    """Take the batch's steps until it waits for the provider or is applied. Returns rows recorded. A step the
    provider failed is tried again at the next poll when the failure is worth another attempt
    (failures.classify: 5xx, 429, timeouts, connections); otherwise (a missing key, a file or batch refused
    with a 4xx) the batch's rows fail with the reason, as their requests would have."""
    import openai

    handled = 0
    while True:
        try:
            with transaction.atomic():
                batch = CallBatch.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
                if batch is None or batch.state == CallBatch.State.APPLIED:
                    return handled  # another handler has it, or it is over
                handled += _step(job, endpoint, client(endpoint), batch)
                if batch.state not in (CallBatch.State.PREPARING, CallBatch.State.UPLOADED):
                    return handled  # submitted and waiting for the provider, or applied
        except TooLarge as exc:
            return handled + _refused(job, endpoint, pk, Failure("batch_too_large", False, str(exc)))
        except (openai.APIError, MissingApiKey, UndeclaredKeyVariable) as exc:
            failure = classify(exc)
            if failure.retryable:
                log.warning("%s batch %s on endpoint %s: %s; tried again at the next poll", job.name, pk,
                            endpoint.pk, failure.message[:200])
                CallBatch.objects.filter(pk=pk).update(
                    next_check_at=timezone.now() + timedelta(seconds=settings.BATCH_POLL_SECONDS))
                return handled
            return handled + _refused(job, endpoint, pk, failure)


def _step(job: Job, endpoint: Endpoint, api: openai.OpenAI, batch: CallBatch) -> int:
    """One step of the batch, in the caller's transaction (which holds its lock). Returns rows recorded."""
    if batch.state == CallBatch.State.PREPARING:
        _upload(job, endpoint, api, batch)
        return 0
    if batch.state == CallBatch.State.UPLOADED:
        _submit(api, batch)
        return 0
    remote = api.batches.retrieve(batch.batch_id)
    _note(batch, remote)
    if remote.status not in FINAL:
        batch.next_check_at = timezone.now() + timedelta(seconds=settings.BATCH_POLL_SECONDS)
        batch.save()
        return 0
    return _apply(job, endpoint, batch, _content(api, remote.output_file_id), _content(api, remote.error_file_id))


def _refused(job: Job, endpoint: Endpoint, pk: int, failure: Failure) -> int:
    """The batch's rows fail with a terminal failure of one of its steps; the batch is over."""
    with transaction.atomic():
        batch = CallBatch.objects.select_for_update().get(pk=pk)
        if batch.state == CallBatch.State.APPLIED:
            return 0
        outcomes = [Outcome(row, "failed", failure=failure, attempts=row.attempts) for row in _rows(job, batch)]
        record_step(job, endpoint, outcomes, Counter(), [])
        batch.failed, batch.provider_status = len(outcomes), batch.provider_status or f"refused: {failure.kind}"
        batch.state, batch.applied_at = CallBatch.State.APPLIED, timezone.now()
        batch.save()
    return len(outcomes)


# --- the steps ------------------------------------------------------------------------------------------------

def _held(job: Job, batch: CallBatch) -> list[int]:
    """The batch's rows still held by its claim (ids, in the job's order)."""
    return list(job.model.objects.filter(claim_token=batch.claim_token, status=RUNNING).order_by(*job.order)
                .values_list("pk", flat=True))


def _rows(job: Job, batch: CallBatch) -> list[LeasedWork]:
    """The batch's rows still held by its claim, loaded with what the job's ask reads."""
    return load_rows(job, _held(job, batch))


def _upload(job: Job, endpoint: Endpoint, api: openai.OpenAI, batch: CallBatch) -> None:
    """preparing → uploaded: the rows' requests as a JSONL file, its id recorded. A file holds requests to one
    path (size_batch claims one): a row asking another goes back in line, to lead the next batch."""
    ids = _held(job, batch)
    if not ids:  # every row was taken from the claim meanwhile (cancelled, reset): nothing to send
        batch.state, batch.applied_at = CallBatch.State.APPLIED, timezone.now()
        batch.save()
        return
    file, path, other, count = write_file(job, endpoint, ids)
    with file:
        if other:
            reset(job.model.objects.filter(pk__in=other, claim_token=batch.claim_token), unsent=True)
        uploaded = api.files.create(file=(f"em-audit-{batch.claim_token}.jsonl", file), purpose="batch")
    batch.input_file_id, batch.url, batch.requests = uploaded.id, path, count
    batch.state = CallBatch.State.UPLOADED
    batch.save()


def _find(api: openai.OpenAI, batch: CallBatch):
    """The provider's batch created for this claim, if one was (newest first; none older than the claim)."""
    since = batch.created_at.timestamp() - 300
    for remote in api.batches.list(limit=100):
        if (remote.metadata or {}).get(METADATA_KEY) == str(batch.claim_token):
            return remote
        if remote.created_at < since:
            return None
    return None


def _submit(api: openai.OpenAI, batch: CallBatch) -> None:
    """uploaded → submitted: the batch created, once: one created before a kill is adopted, not made again."""
    remote = _find(api, batch) or api.batches.create(
        input_file_id=batch.input_file_id, endpoint=f"/v1{batch.url}", completion_window="24h",
        metadata={METADATA_KEY: str(batch.claim_token)},
    )
    batch.batch_id, batch.state = remote.id, CallBatch.State.SUBMITTED
    _note(batch, remote)
    batch.next_check_at = timezone.now() + timedelta(seconds=settings.BATCH_POLL_SECONDS)
    batch.save()


def _note(batch: CallBatch, remote) -> None:
    counts = remote.request_counts
    batch.provider_status = remote.status
    if counts is not None:
        batch.provider_completed, batch.provider_failed = counts.completed, counts.failed
    batch.output_file_id, batch.error_file_id = remote.output_file_id or "", remote.error_file_id or ""


def _content(api: openai.OpenAI, file_id: str | None) -> bytes:
    return api.files.content(file_id).content if file_id else b""


class _Replay(Calls):
    """A row's requests when its batch answered: the first is answered by the batch's reply, any further one
    is sent as usual."""

    def __init__(self, *args, reply: dict):
        super().__init__(*args)
        self.reply: dict | None = reply

    async def _send(self, path, reply_type, request):
        if self.reply is None:
            return await super()._send(path, reply_type, request)
        reply, self.reply = self.reply, None
        return self.received(reply_type, reply)


def _replay(job: Job, endpoint: Endpoint, answered: list[tuple[LeasedWork, dict]]) -> list[Answer | Exception]:
    """The job's answers from the batch's replies, in the process's event loop (a further request goes
    through the account's limits like any other)."""
    process = the_process()
    home = Home(process.loop)

    async def run():
        account = process.account(endpoint, await home.run(account_limits, endpoint))

        async def one(row, reply):
            try:
                return await job.ask(_Replay(process, endpoint, account, home.run, reply=reply), row)
            except Exception as exc:  # noqa: BLE001 - classified by the caller, as the driver does
                return exc

        return await asyncio.gather(*(one(row, reply) for row, reply in answered))

    return home.serve(asyncio.run_coroutine_threadsafe(run(), process.loop))


def _apply(job: Job, endpoint: Endpoint, batch: CallBatch, output: bytes, errors: bytes) -> int:
    """submitted → applied, in the caller's transaction: each row still held by the claim gets its answer, or
    goes the way a failed call goes. Returns rows recorded done or failed."""
    url = f"{endpoint.base_url}{batch.url}"
    rows = _rows(job, batch)
    replies, failed, _ = read_results(output, errors, url, {job.key(row) for row in rows})
    answered = [(row, replies[job.key(row)]) for row in rows if job.key(row) in replies]
    answers = dict(zip([row.pk for row, _ in answered], _replay(job, endpoint, answered), strict=True))
    now = timezone.now()
    outcomes = []
    for row in rows:
        latency = min(int((now - row.claimed_at).total_seconds() * 1000), 2**31 - 1) if row.claimed_at else 0
        result = answers.get(row.pk) or failed.get(job.key(row)) or Failure(
            "batch_missing", True, f"no answer in batch {batch.batch_id} ({batch.provider_status})")
        if isinstance(result, Answer):
            outcomes.append(Outcome(row, "done", answer=result, latency_ms=latency))
            continue
        failure = result if isinstance(result, Failure) else classify(result)
        if failure.retryable and row.attempts < settings.GENERATION_MAX_ATTEMPTS:
            outcomes.append(Outcome(row, "give_back"))
        else:
            outcomes.append(Outcome(row, "failed", failure=failure, attempts=row.attempts))
    record_step(job, endpoint, outcomes, Counter(), [])
    batch.answered = sum(o.kind == "done" for o in outcomes)
    batch.failed = sum(o.kind == "failed" for o in outcomes)
    batch.requeued = sum(o.kind == "give_back" for o in outcomes)
    batch.state, batch.applied_at = CallBatch.State.APPLIED, now
    batch.save()
    if batch.requeued:
        transaction.on_commit(lambda: job.send(endpoint.pk))
    return batch.answered + batch.failed
