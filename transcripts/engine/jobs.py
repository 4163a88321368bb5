"""What the engine runs: a `Job` (which rows, what to ask, what to record), the states of leased work,
and what "pending again" means."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from celery.worker import state as worker_state
from django.conf import settings
from django.db.models import F, QuerySet

from ..models import Endpoint, LeasedWork

if TYPE_CHECKING:
    from .calls import Calls

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass(frozen=True)
class Claim:
    row_id: int
    token: uuid.UUID
    start_at: datetime  # when it was claimed


@dataclass
class Usage:
    """What the server reported about the calls made for one row (a judge verdict may take several)."""

    served_model: str = ""
    system_fingerprint: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # of prompt_tokens, what the server's prompt cache served

    def add(self, completion) -> None:
        """Fold in one completion object of the `openai` client."""
        self.served_model = self.served_model or (getattr(completion, "model", "") or "")[:200]
        self.system_fingerprint = (
            self.system_fingerprint or (getattr(completion, "system_fingerprint", "") or "")[:200]
        )
        usage = getattr(completion, "usage", None)
        if usage is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + (usage.prompt_tokens or 0)
            # An embeddings reply's usage has no completion tokens.
            self.completion_tokens = (self.completion_tokens or 0) + (getattr(usage, "completion_tokens", 0) or 0)
            details = getattr(usage, "prompt_tokens_details", None)
            cached = getattr(details, "cached_tokens", None) if details is not None else None
            if cached is not None:
                self.cached_tokens = (self.cached_tokens or 0) + cached

    def cost(self, endpoint: Endpoint) -> Decimal:
        """What these calls cost at the endpoint's prices (Endpoint.cost)."""
        return endpoint.cost(self.prompt_tokens or 0, self.completion_tokens or 0, self.cached_tokens or 0)


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

    def key(self, row: LeasedWork) -> str:
        """The row's key in a Batch API file (`custom_id`): unique among the job's rows, stable across claims."""
        return str(row.pk)

    def recorded(self, rows: list[LeasedWork]) -> None:
        """Called inside the transaction that recorded these rows done, with the rows as claimed (their `related`
        loaded) and the written fields set (defer with on_commit what must wait)."""

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


def attribute_of(row: LeasedWork, lookup: str):
    """Follow a `a__b__c` lookup on a loaded row (the last part as its `_id` when it is a foreign key)."""
    *path, last = lookup.split("__")
    target = row
    for part in path:
        target = getattr(target, part)
    return getattr(target, f"{last}_id", None) or getattr(target, last)


def object_at(row: LeasedWork, lookup: str):
    """The object at the end of a `a__b__c` lookup on a loaded row."""
    target = row
    for part in lookup.split("__"):
        target = getattr(target, part)
    return target


def row_endpoint(job: Job, row: LeasedWork) -> Endpoint:
    return object_at(row, job.endpoint_field)


def lease_length(endpoint: Endpoint) -> timedelta:
    # The lease must outlast a request that is still legitimately in flight, or the reconciler would hand
    # the row out twice (harmless for the result, but a wasted call). Held rows are renewed as a heartbeat.
    return timedelta(seconds=max(settings.SLOT_LEASE_SECONDS, endpoint.timeout_seconds + 5))


def reset(rows: QuerySet, *, fresh_attempts: bool = False, unsent: bool = False) -> int:
    """Put rows back in line, unclaimed: for a lease that ended, a claim given back, (`unsent`) a claim whose
    request was never sent, which takes back the attempt the claim counted, or (`fresh_attempts`) a failed row
    a researcher retries, which also forgets its attempts and error. The one place that says what "pending
    again" means for leased work."""
    fields: dict[str, Any] = {"status": PENDING, "claim_token": None, "lease_until": None}
    if fresh_attempts:
        fields.update(attempts=0, error="", error_kind="")
    elif unsent:
        fields.update(attempts=F("attempts") - 1)
    return rows.update(**fields)
