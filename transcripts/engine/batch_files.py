"""What goes into a Batch API file and what comes out of one (transcripts/engine/batches.py sends and applies
them): each row's request as a JSONL line; a batch sized within the provider's limits (requests and bytes per
file, and the account's queue of enqueued tokens) and each experiment's budget; and the output and error files
read back trusting nothing in them but the `custom_id`s of the batch's own rows.

The limits are why a batch is sized when it is claimed, not when it is written: at the paper's scale a request
is 50–100k tokens (0.2–0.4 MB of JSON), so a 200 MB file holds about 500 of them, far below the 50,000
requests a file may hold; and a provider refuses (or fails) a whole batch that would take its account past its
queue. An experiment's budget counts its open batches at what they may cost (their requests at the batch prices,
every answer at max_tokens) before they are billed: otherwise batches claimed one after another, hours before
the first is applied and charged, would spend many times the budget. Sizing builds the rows' requests in
chunks; the file is written the same way, to a temporary file, so a worker never holds more than a chunk of
requests in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, TYPE_CHECKING

import httpx2
from django.conf import settings
from django.db.models import Sum

from ..models import CallBatch, Endpoint, Experiment, LeasedWork
from .calls import Calls
from .failures import Failure
from .jobs import Job, attribute_of
from .limits import estimated_tokens

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

CHUNK = 100  # rows whose requests are built at once, while a batch is sized or written (≤ 40 MB at k = 256)


class TooLarge(Exception):
    """A request that no batch can hold: over the file's bytes or the account's whole queue on its own."""


class _Asked(Exception):  # noqa: N818 - not an error: how a job's first request is caught unsent
    def __init__(self, path: str, body: dict):
        super().__init__(path)
        self.path, self.body = path, body


class _Collect(Calls):
    """Calls that send nothing: the job's first request is caught as it is asked, for the batch file."""

    def __init__(self, endpoint: Endpoint):
        super().__init__(None, endpoint, None, None)

    async def _send(self, path, reply_type, request):
        raise _Asked(path, {"model": self.endpoint.model, **request})


def requests_of(job: Job, endpoint: Endpoint, rows: list[LeasedWork]) -> list[tuple[LeasedWork, str, dict]]:
    """Each row's first request, as (row, API path, body): what the job would have sent."""
    async def collect():
        asked = []
        for row in rows:
            try:
                await job.ask(_Collect(endpoint), row)
            except _Asked as request:
                asked.append((row, request.path, request.body))
            else:  # pragma: no cover - every job asks something
                raise RuntimeError(f"{job.name} row {row.pk} answered without asking")
        return asked

    return asyncio.run(collect())


def line(job: Job, row: LeasedWork, path: str, body: dict) -> bytes:
    """The row's line of the batch file (without its newline)."""
    return json.dumps({"custom_id": job.key(row), "method": "POST", "url": f"/v1{path}", "body": body}).encode()


def queued_tokens(body: dict) -> int:
    """A request's prompt tokens, estimated as the rate limits estimate them: what a provider's batch queue counts."""
    return estimated_tokens(body) - (body.get("max_tokens") or 0)


def queue_room(endpoint: Endpoint) -> int | None:
    """Tokens the endpoint's account may still enqueue for its model (None: no limit set): its queue less what
    its open batches hold, whichever endpoint or job they are of."""
    if endpoint.batch_queue_tokens is None:
        return None
    held = (CallBatch.objects.filter(endpoint__base_url=endpoint.base_url, endpoint__api_key_env=endpoint.api_key_env,
                                     endpoint__model=endpoint.model)
            .open().aggregate(n=Sum("tokens"))["n"]) or 0
    return endpoint.batch_queue_tokens - held


def load_rows(job: Job, ids: list[int]) -> list[LeasedWork]:
    """The rows of `ids` in that order, loaded with what the job's ask reads."""
    found = job.model.objects.select_related(*job.related).in_bulk(ids)
    rows = [found[pk] for pk in ids if pk in found]
    job.prepare(rows)
    return rows


def _asked_in_chunks(job: Job, endpoint: Endpoint, ids: list[int], keep: Callable[[LeasedWork], bool] = bool,
                     ) -> Iterator[tuple[LeasedWork, str, dict]]:
    for start in range(0, len(ids), CHUNK):
        rows = [row for row in load_rows(job, ids[start:start + CHUNK]) if keep(row)]
        yield from requests_of(job, endpoint, rows)


def batch_cost(endpoint: Endpoint, body: dict) -> Decimal:
    """What a request may cost through the Batch API: its estimated prompt tokens, and an answer of max_tokens."""
    return endpoint.cost(queued_tokens(body), body.get("max_tokens") or 0, batch_api=True)


def committed_usd(experiment_id: int) -> Decimal:
    """What the experiment's open batches may still cost (CallBatch.estimated_usd: not billed until applied)."""
    open_batches = CallBatch.objects.filter(experiments=experiment_id).open()
    return sum((Decimal(costs.get(str(experiment_id), 0)) for costs in
                open_batches.values_list("estimated_usd", flat=True)), Decimal(0))


class _Budgets:
    """What each experiment of the rows may still commit to batches: its budget less what it spent and what its
    open batches may cost (None: no budget). Once a row does not fit, its experiment takes no more rows in this
    batch (its rows stay in order; the next batch is sized again once this one is billed)."""

    def __init__(self, job: Job):
        self.job, self.room, self.short = job, {}, set()

    def experiment(self, row: LeasedWork) -> int:
        return attribute_of(row, self.job.experiment_field)

    def open(self, row: LeasedWork) -> bool:
        experiment_id = self.experiment(row)
        if experiment_id not in self.room:
            budget, spent = Experiment.objects.values_list("budget_usd", "spent_usd").get(pk=experiment_id)
            self.room[experiment_id] = None if budget is None else budget - spent - committed_usd(experiment_id)
        return experiment_id not in self.short

    def take(self, row: LeasedWork, cost: Decimal) -> bool:
        experiment_id = self.experiment(row)
        room = self.room[experiment_id]
        if room is not None and cost > room:
            self.short.add(experiment_id)
            return False
        if room is not None:
            self.room[experiment_id] = room - cost
        return True


@dataclass
class Sized:
    ids: list[int]  # the rows that go in the batch, in the job's order
    tokens: int  # their estimated prompt tokens
    full: bool  # a limit ended it (not the rows running out)
    costs: dict[int, Decimal] = field(default_factory=dict)  # what they may cost, by experiment
    short: set[int] = field(default_factory=set)  # experiments whose next row would pass their budget


def size_batch(job: Job, endpoint: Endpoint, ids: list[int]) -> Sized:
    """The first of `ids` (at most BATCH_MAX_REQUESTS, in the job's order) whose requests fit one file of one
    API path within BATCH_MAX_FILE_BYTES and the account's queue room. Rows asking another path (a digit-by-digit
    judge's completions) are left for a file of their own. A request that fits no batch on its own is a batch of
    one, refused with the reason when it is written (`write_file`); one that fits the queue only once other
    batches end gives an empty batch: wait. An experiment's rows stop at the first whose cost would pass what its
    budget has left (`_Budgets`); the others' go on."""
    max_bytes, cap, room = settings.BATCH_MAX_FILE_BYTES, endpoint.batch_queue_tokens, queue_room(endpoint)
    if room is not None and room <= 0 and cap > 0:
        return Sized([], 0, True)  # the queue is full: wait for a batch to end
    chosen: list[int] = []
    size = tokens = 0
    path = None
    budgets = _Budgets(job)
    costs: dict[int, Decimal] = defaultdict(Decimal)
    for row, each, body in _asked_in_chunks(job, endpoint, ids, budgets.open):
        path = path or each
        if each != path:
            continue
        n_bytes, n_tokens, cost = len(line(job, row, path, body)) + 1, queued_tokens(body), batch_cost(endpoint, body)
        if not chosen and (n_bytes > max_bytes or (cap is not None and n_tokens > cap)):
            return Sized([row.pk], n_tokens, True, {budgets.experiment(row): cost}, budgets.short)
        if size + n_bytes > max_bytes or (room is not None and tokens + n_tokens > room):
            return Sized(chosen, tokens, True, costs, budgets.short)
        if not budgets.take(row, cost):
            continue
        chosen.append(row.pk)
        size, tokens = size + n_bytes, tokens + n_tokens
        costs[budgets.experiment(row)] += cost
    return Sized(chosen, tokens, len(ids) >= settings.BATCH_MAX_REQUESTS, costs, budgets.short)


def write_file(job: Job, endpoint: Endpoint, ids: list[int]) -> tuple[IO[bytes], str, list[int], int]:
    """The batch file of the rows of `ids` (a temporary file, at its start), its API path, the rows of another
    path (to give back) and its line count. Raises TooLarge for a file past the limits (a batch of one request
    too large for any; `size_batch` sizes the others within them)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    path, other, count, tokens = None, [], 0, 0
    for row, each, body in _asked_in_chunks(job, endpoint, ids):
        path = path or each
        if each != path:
            other.append(row.pk)
            continue
        out.write(line(job, row, path, body) + b"\n")
        count, tokens = count + 1, tokens + queued_tokens(body)
    size = out.tell()
    out.seek(0)
    cap = endpoint.batch_queue_tokens
    if size > settings.BATCH_MAX_FILE_BYTES or (cap is not None and tokens > cap):
        out.close()
        raise TooLarge(f"a batch file of {size:,} bytes and about {tokens:,} prompt tokens: over the limits of "
                       f"{settings.BATCH_MAX_FILE_BYTES:,} bytes (BATCH_MAX_FILE_BYTES) or the account's batch "
                       f"queue of {cap or 0:,} tokens (the endpoint's batch_queue_tokens); no batch can send it")
    return out, path or "", other, count


def _status_error(status, body, url: str) -> openai.APIStatusError:
    """An error file's request as the client would have raised it, so failures.classify decides its fate (a
    status that is no error's is a server's: retried)."""
    import openai

    status = status if isinstance(status, int) and 400 <= status <= 599 else 500
    response = httpx2.Response(status, json=body if isinstance(body, dict) else {"error": body},
                               request=httpx2.Request("POST", url))
    error = body.get("error") if isinstance(body, dict) else None
    message = (error.get("message") if isinstance(error, dict) else None) or json.dumps(body)[:500]
    return openai.APIStatusError(message, response=response, body=body)


def _records(content: bytes) -> Iterator[dict]:
    for number, text in enumerate(content.splitlines(), 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            log.warning("batch file line %d is not JSON: ignored", number)
            continue
        if isinstance(record, dict):
            yield record


def read_results(output: bytes, errors: bytes, url: str, expected: set[str],
                 ) -> tuple[dict[str, dict], dict[str, Exception | Failure], int]:
    """(custom_id → reply body) for answered requests, (custom_id → error) for the others, and how many lines
    were ignored. Only the first line of each of `expected` (the batch's rows still held by its claim) counts: a
    line naming anything else (not ours, answered already, another claim's row) or repeating one is ignored, and
    so never written."""
    replies: dict[str, dict] = {}
    failed: dict[str, Exception | Failure] = {}
    ignored = 0
    for record in _records(output + b"\n" + errors):
        custom_id, response, error = record.get("custom_id"), record.get("response"), record.get("error")
        if not isinstance(custom_id, str) or custom_id not in expected or custom_id in replies or custom_id in failed:
            ignored += 1
            continue
        if isinstance(response, dict) and response.get("status_code") == 200 and isinstance(response.get("body"), dict):
            replies[custom_id] = response["body"]
        elif isinstance(response, dict):
            failed[custom_id] = _status_error(response.get("status_code"), response.get("body"), url)
        else:  # not run (the batch expired or was cancelled first): as missing, retried
            detail = error if isinstance(error, dict) else {}
            failed[custom_id] = Failure(str(detail.get("code") or "batch_error")[:50], True,
                                        str(detail.get("message") or "the batch did not run this request"))
    if ignored:
        log.warning("%d lines of a batch's results named no request of its own, or one already read: ignored",
                    ignored)
    return replies, failed, ignored
