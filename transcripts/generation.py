"""Generation: the call engine's first job (transcripts/engine/). A transcript slot is claimed in
prefix-grouped `dispatch_order`, its prompt rebuilt from its inputs, sent as a chat request, and the reasoning
and answer recorded; `transcripts_finished` is sent for each recorded batch once it has committed."""

from __future__ import annotations

from datetime import timedelta

from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import aggregates, engine, prompting
from .experiments import prompts
from .experiments.status import mark_done_if_finished
from .models import Experiment, Transcript
from .signals import announce_finished

# The work message's task (tasks.py runs `work` under this name), sent by name: the task module imports this one.
GENERATE_TASK = "transcripts.tasks.generate"
ANNOUNCE_GRACE = timedelta(seconds=30)


def slot_messages(slot: Transcript) -> list[dict]:
    """The prompt of a slot, rebuilt from its inputs (also used by the transcript page)."""
    return prompts.slot_messages(slot.condition, slot.question, slot.paraphrase_index)


class Generation(engine.Job):
    name = "generation"
    model = Transcript
    endpoint_field = "condition__endpoint"
    experiment_field = "experiment"
    # Two thirds of a one-at-a-time server while judging waits too: answers (and the auditors' queue) come first.
    turn_share = 2.0
    order = ("dispatch_order",)
    related = ("condition__endpoint", "condition__dataset", "question", "experiment")

    def pending(self, endpoint_id: int) -> QuerySet:
        return Transcript.objects.filter(
            condition__endpoint_id=endpoint_id, status=Transcript.Status.PENDING,
            experiment__status=Experiment.Status.RUNNING,
        ).order_by(*self.order)

    def prepare(self, rows: list[Transcript]) -> None:
        for row in rows:
            row.messages = slot_messages(row)  # reads the dataset's examples (cached per process)

    async def ask(self, calls: engine.Calls, row: Transcript) -> engine.Answer:
        completion = await calls.chat(
            messages=row.messages, temperature=row.condition.temperature, max_tokens=row.experiment.max_tokens,
            seed=row.seed,
        )
        choice = engine.first_choice(completion)
        if getattr(choice, "message", None) is None:
            raise engine.MalformedReply(f"no message in reply: {str(completion)[:300]!r}")
        message = choice.message
        extra = message.model_extra or {}
        native = extra.get("reasoning_content") or extra.get("reasoning") or ""
        if native:
            reasoning, answer = str(native).strip(), (message.content or "").strip()
        else:
            reasoning, answer = prompting.split_reasoning(message.content or "")
        return engine.Answer(
            fields={"reasoning": reasoning, "answer": answer, "finish_reason": (choice.finish_reason or "")[:50],
                    "prompt_hash": prompting.prompt_hash(row.messages)},
            usage=calls.usage,
        )

    def key(self, row: Transcript) -> str:
        return row.slot_key

    def recorded(self, rows: list[Transcript]) -> None:
        # In the transaction that marked them done: the transcripts join their groups' verdict counts.
        aggregates.refresh_groups({(row.condition_id, row.question_id) for row in rows})
        transaction.on_commit(lambda: announce_finished(rows))

    def send(self, endpoint_id: int) -> None:
        current_app.send_task(GENERATE_TASK, args=[endpoint_id])


GENERATION = engine.register(Generation())


def claim_next(endpoint_id: int) -> engine.Claim | None:
    return engine.claim_next(GENERATION, endpoint_id)


def run_claim(claim: engine.Claim) -> None:
    engine.run_claim(GENERATION, claim)


def work(endpoint_id: int, budget_seconds: float | None = None) -> int:
    """Generate the endpoint's pending slots in dispatch order until none can be claimed. Returns slots run."""
    handled = engine.work(GENERATION, endpoint_id, budget_seconds)
    # Checked once per message, not per slot: the last thread to run out of slots sees the experiment end.
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING, conditions__endpoint_id=endpoint_id)
    for experiment_id in running.values_list("pk", flat=True).distinct():
        mark_done_if_finished(experiment_id)
    return handled


def dispatch(experiment_ids: list[int] | None = None) -> int:
    """Fill each endpoint's free places with work messages for pending slots of running experiments."""
    pending = Transcript.objects.filter(experiment__status=Experiment.Status.RUNNING)
    if experiment_ids is not None:
        pending = pending.filter(experiment_id__in=experiment_ids)
    return engine.dispatch(GENERATION, pending)


def reconcile() -> dict:
    """Return expired leases to pending (or fail slots that used every attempt), re-dispatch running
    experiments whose messages were lost, announce finished slots whose announcement did not get through, and
    mark finished experiments done."""
    returned, failed = engine.expire_leases(GENERATION)
    sent = dispatch()
    announced = announce_missed()
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING).values_list("pk", flat=True)
    finished = [pk for pk in running if mark_done_if_finished(pk)]
    return {"returned": returned, "failed": failed, "dispatched": sent, "announced_again": announced,
            "finished_experiments": finished}


def announce_missed(limit: int = 1000) -> int:
    """Announce again (up to `limit`) slots finished over ANNOUNCE_GRACE ago and still unannounced: a receiver
    failed, or the process died between the commit and the announcement. The grace leaves the announcement
    that follows every commit alone."""
    missed = list(
        Transcript.objects.filter(status=Transcript.Status.DONE, announced=False,
                                  finished_at__lt=timezone.now() - ANNOUNCE_GRACE)
        .select_related("experiment").order_by("pk")[:limit]
    )
    if missed:
        announce_finished(missed)
    return len(missed)
