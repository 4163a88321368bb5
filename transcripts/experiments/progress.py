"""How far experiments are: slots by status for a list of experiments or conditions, and one experiment's
progress as its page and `run_experiment --wait` show it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Count, Min, Sum
from django.utils import timezone

from ..models import CallBatch, Experiment, Transcript, VerdictCount


def slot_counts(by: str, ids: Iterable[int]) -> dict[int, Counter]:
    """{experiment or condition id: Counter(status → slots)}, `by` naming the column ("experiment_id" or
    "condition_id"). Done slots are summed from the maintained VerdictCount rows (one per condition × question)
    and only the others are counted in the transcript table, on its (experiment, status) or (condition, status)
    index: a finished experiment of a million slots costs what an empty one does."""
    ids = list(ids)
    counts: dict[int, Counter] = defaultdict(Counter)
    done = VerdictCount.objects.filter(**{f"{by}__in": ids}).order_by().values_list(by).annotate(n=Sum("done"))
    for key, n in done:
        counts[key][Transcript.Status.DONE] = n
    unfinished = Transcript.objects.filter(**{f"{by}__in": ids}, status__in=UNFINISHED).order_by()
    for key, status, n in unfinished.values_list(by, "status").annotate(n=Count("*")):
        counts[key][status] = n
    return counts


UNFINISHED = [status for status in Transcript.Status.values if status != Transcript.Status.DONE]
FINISHED = [Transcript.Status.DONE, Transcript.Status.FAILED]  # the slots the transcript_exp_finished index holds
THROUGHPUT_WINDOW = timedelta(minutes=5)


def batch_states(experiment: Experiment) -> list[CallBatch]:
    """The Batch API batches that hold (or held) the experiment's rows, newest first (transcripts/engine/batches.py)."""
    return list(experiment.call_batches.order_by("-pk")[:50])


def progress(experiment: Experiment) -> dict:
    """What the experiment page and `run_experiment --wait` show: counts by status, failures by reason,
    generation tokens, the cost so far, the prompt-cache hit rate and what caching and the Batch API saved, the
    429 replies (all kept by the call engine, generation and judging), the slots reused from earlier answers, the
    Batch API batches, and why work stopped early, throughput over the last five minutes and the ETA it implies
    (while it runs), and the
    ids of the ten transcripts finished last.

    Throughput counts only what finished recently, from the first of those finishes to now: not from the
    experiment's start, which after a stop and a restart lies before a pause when nothing finished (an ETA of
    an hour for three minutes of work). Until two slots have finished in the window there is no ETA.

    Polled every 2 s while a run is live, so nothing here reads the experiment's done rows: counts and token
    sums come from the maintained VerdictCount rows, the newest and recent slots from the (experiment,
    finished_at) index of finished slots."""
    # Counted once per condition and summed: the page's bar and its conditions table show the same numbers.
    by_condition = slot_counts("condition_id", experiment.conditions.values_list("pk", flat=True))
    counted = sum(by_condition.values(), Counter())
    by_status = {status: counted[status] for status in Transcript.Status.values}
    slots = experiment.transcripts
    failed_by_kind = dict(
        slots.filter(status=Transcript.Status.FAILED)
        .values_list("error_kind").annotate(n=Count("pk")).order_by("error_kind").values_list("error_kind", "n")
    )
    tokens = VerdictCount.objects.filter(experiment=experiment).aggregate(
        prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens")
    )
    recent_ids = list(
        slots.filter(status=Transcript.Status.DONE).order_by("-finished_at").values_list("pk", flat=True)[:10]
    )
    # Read afresh: the engine adds to spent_usd and sets stop_reason while the caller's object ages.
    money = Experiment.objects.filter(pk=experiment.pk).values(
        "spent_usd", "stop_reason", "budget_usd", "rate_limited", "charged_prompt_tokens", "cached_tokens",
        "cache_saved_usd", "batch_saved_usd",
    ).get()
    remaining = by_status[Transcript.Status.PENDING] + by_status[Transcript.Status.RUNNING]
    per_minute, eta = 0.0, None
    if experiment.status == Experiment.Status.RUNNING:
        now = timezone.now()
        recent = slots.filter(status__in=FINISHED, finished_at__gte=now - THROUGHPUT_WINDOW).aggregate(
            n=Count("pk"), first=Min("finished_at"))
        # The first recent finish starts the clock; the n - 1 after it took the time since.
        elapsed = (now - recent["first"]).total_seconds() if recent["first"] else 0.0
        per_minute = (recent["n"] - 1) / elapsed * 60 if recent["n"] > 1 and elapsed > 1 else 0.0
        eta = timedelta(seconds=int(remaining / per_minute * 60)) if per_minute and remaining else None
    return {
        "total": sum(by_status.values()), "by_status": by_status, "remaining": remaining,
        "finished": by_status[Transcript.Status.DONE] + by_status[Transcript.Status.FAILED],
        "failed_by_kind": failed_by_kind, "recent_ids": recent_ids,
        "prompt_tokens": tokens["prompt_tokens"] or 0, "completion_tokens": tokens["completion_tokens"] or 0,
        "cost": money["spent_usd"], "budget": money["budget_usd"], "stop_reason": money["stop_reason"],
        "rate_limited": money["rate_limited"],
        "cache_hit_rate": (money["cached_tokens"] / money["charged_prompt_tokens"]
                           if money["charged_prompt_tokens"] else None),
        "cache_hit_percent": (100 * money["cached_tokens"] / money["charged_prompt_tokens"]
                              if money["charged_prompt_tokens"] else None),
        "cached_tokens": money["cached_tokens"], "cache_saved": money["cache_saved_usd"],
        "batch_saved": money["batch_saved_usd"], "reused": slots.filter(reused_from__isnull=False).count(),
        "batches": batch_states(experiment),
        "per_minute": per_minute, "eta": eta, "by_condition": by_condition,
    }
