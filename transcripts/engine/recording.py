"""Recording answers (on the driver's recording thread): each row written once, under its claim token, with
its cost charged to its experiment."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, models, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from ..experiments.status import cancel
from ..models import Endpoint, Experiment, LeasedWork
from .failures import ERROR_TEXT_LIMIT, Failure
from .jobs import DONE, FAILED, RUNNING, Answer, Job, Usage, attribute_of, lease_length, reset


@dataclass
class Outcome:
    """What became of one held row, recorded at the driver's next step."""

    row: LeasedWork
    kind: str  # "done", "failed", "give_back" or "renew"
    answer: Answer | None = None
    latency_ms: int = 0
    failure: Failure | None = None
    attempts: int = 0
    delay: float = 0.0  # renew: the backoff the new lease must cover
    kept: asyncio.Future | None = None  # renew: set to whether the claim was still held


USAGE_FIELDS = ("served_model", "system_fingerprint", "prompt_tokens", "completion_tokens", "cached_tokens")


def _record(job: Job, endpoint: Endpoint, outcomes: list[Outcome], rate_limited: Counter,
            heartbeat: list[LeasedWork]) -> tuple[set[int], set[int]]:
    """Write the outcomes of rows whose claim still holds, charge their cost, count 429s and renew the leases
    of rows still held. Returns (ids recorded done or failed, ids renewed). Caller is inside a transaction."""
    now = timezone.now()
    lease = lease_length(endpoint)
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
    values_done = {
        o.row.pk: {**o.answer.fields, **{name: getattr(o.answer.usage, name) for name in USAGE_FIELDS},
                   "latency_ms": o.latency_ms, "status": DONE, "error_kind": "", "error": "", "lease_until": None,
                   "finished_at": now}
        for o in done
    }
    _update_each(job.model, [{"pk": pk, **values} for pk, values in values_done.items()])
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
        for o in done:  # the rows as written, so `recorded` need not read them back
            for name, value in values_done[o.row.pk].items():
                setattr(o.row, name, value)
        job.recorded([o.row for o in done])
    return {o.row.pk for o in done + failed}, renewed


def _column_value(field: models.Field, value):
    """What a row's value stores in the field's column: a related object's key for a foreign key."""
    return value.pk if field.is_relation and isinstance(value, models.Model) else value


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
    params = [[row["pk"] for row in rows]] + [
        [field.get_db_prep_save(_column_value(field, row[field.name]), connection) for row in rows]
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


@dataclass
class _Bill:
    """One experiment's share of a recording step."""

    spent: Decimal = Decimal(0)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_saved: Decimal = Decimal(0)
    batch_saved: Decimal = Decimal(0)

    def add(self, endpoint: Endpoint, usage: Usage) -> None:
        # Every figure is a difference of the one formula (Endpoint.cost): without the cache discount, and
        # without the Batch API's.
        prompt, completion, cached = usage.prompt_tokens or 0, usage.completion_tokens or 0, usage.cached_tokens or 0
        spent = endpoint.cost(prompt, completion, cached)
        without_cache = endpoint.cost(prompt, completion)
        self.spent += spent
        self.prompt_tokens += prompt
        self.cached_tokens += min(cached, prompt)
        self.cache_saved += without_cache - spent
        if endpoint.batch_api:
            self.batch_saved += endpoint.cost(prompt, completion, batch_api=False) - without_cache


def _charge(job: Job, endpoint: Endpoint, done: list[Outcome], rate_limited: Counter) -> None:
    """Add the step's cost, prompt and cached tokens, savings and 429s to each experiment (one UPDATE each);
    stop an experiment once its budget is reached."""
    bills: dict[int, _Bill] = defaultdict(_Bill)
    for o in done:
        bills[attribute_of(o.row, job.experiment_field)].add(endpoint, o.answer.usage)
    for experiment_id in sorted({*(pk for pk, bill in bills.items() if bill.prompt_tokens or bill.spent),
                                 *rate_limited}):
        bill = bills.get(experiment_id, _Bill())
        Experiment.objects.filter(pk=experiment_id).update(
            spent_usd=F("spent_usd") + bill.spent, rate_limited=F("rate_limited") + rate_limited.get(experiment_id, 0),
            charged_prompt_tokens=F("charged_prompt_tokens") + bill.prompt_tokens,
            cached_tokens=F("cached_tokens") + bill.cached_tokens,
            cache_saved_usd=F("cache_saved_usd") + bill.cache_saved,
            batch_saved_usd=F("batch_saved_usd") + bill.batch_saved,
        )
        if bill.spent:
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


def record_step(job: Job, endpoint: Endpoint, outcomes: list[Outcome], rate_limited: Counter,
                 heartbeat: list[LeasedWork]) -> tuple[set[int], set[int]]:
    """A driver's recording, in its own transaction (see `_record`)."""
    with transaction.atomic():
        return _record(job, endpoint, outcomes, rate_limited, heartbeat)
