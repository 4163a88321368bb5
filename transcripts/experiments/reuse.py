"""Reuse of answers, on request (a definition's `reuse: true` or list of experiments): a slot whose whole
request equals an answered one is filled from it without a call, and linked to it (`Transcript.reused_from`).

The whole request is what generation sends (generation.Generation.ask): the endpoint version, the messages
(their hash, `prompt_hash`), temperature, max_tokens and seed. Extending a study by one more k then pays only
for the new k: the old conditions' slots have the same seeds and prompts. Off by default: a new sample of a
sampled model is a new draw, and an experiment that reuses says so (estimate, progress, methods)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.db import transaction
from django.utils import timezone

from .. import aggregates, prompting
from ..models import Condition, Question, Transcript
from ..signals import announce_finished
from .prompts import slot_messages
from .spec import Spec

# What a reused slot takes from its original: the answer and what the server said about it.
COPIED = ("reasoning", "answer", "finish_reason", "served_model", "system_fingerprint", "prompt_tokens",
          "completion_tokens", "cached_tokens")

Key = tuple[str, int]  # (prompt hash, seed)


class _Prompts:
    """Prompt hashes of one condition's slots, each built once per (question, paraphrase)."""

    def __init__(self, condition: Condition):
        self.condition, self.seen = condition, {}

    def key(self, question: Question, paraphrase_index: int, seed: int) -> Key:
        at = (question.pk, paraphrase_index)
        if at not in self.seen:
            self.seen[at] = prompting.prompt_hash(slot_messages(self.condition, question, paraphrase_index))
        return self.seen[at], seed


def originals(condition: Condition, max_tokens: int, wanted: set[Key], reuse: bool | tuple[int, ...],
              exclude_experiment: int | None = None) -> dict[Key, int]:
    """The answered transcript (its id; for a reused one, its original's) of each wanted (prompt hash, seed)
    on the condition's endpoint version, temperature and max_tokens, from the experiments `reuse` allows."""
    if not reuse or not wanted or condition.endpoint_id is None:
        return {}
    answered = Transcript.objects.filter(
        status=Transcript.Status.DONE, condition__endpoint_id=condition.endpoint_id,
        condition__temperature=condition.temperature, experiment__max_tokens=max_tokens,
        prompt_hash__in={h for h, _ in wanted}, seed__in={s for _, s in wanted},
    )
    if reuse is not True:
        answered = answered.filter(experiment_id__in=reuse)
    if exclude_experiment is not None:
        answered = answered.exclude(experiment_id=exclude_experiment)
    found: dict[Key, int] = {}
    for prompt_hash, seed, pk, origin in answered.order_by("pk").values_list(
            "prompt_hash", "seed", "pk", "reused_from_id").iterator(chunk_size=2000):
        if (prompt_hash, seed) in wanted:
            found.setdefault((prompt_hash, seed), origin or pk)
    return found


def _planned_slots(spec: Spec) -> Iterator[tuple[Condition, list[tuple[Question, int, int]]]]:
    """Each condition a Spec defines (unsaved), with its slots as (question, paraphrase index, seed)."""
    slots = []
    for question in spec.questions:
        for sample in range(spec.samples):
            seed = prompting.sample_seed(spec.seed, question.key, sample)
            slots.append((question, prompting.paraphrase_index(seed, len(question.paraphrases)), seed))
    for endpoint in spec.endpoints:
        for dataset in spec.datasets:
            for k in spec.k:
                for cot in spec.cot:
                    for (_name, text) in spec.system_prompts:
                        for temperature in spec.temperatures:
                            yield Condition(endpoint=endpoint, dataset=dataset, k=k, cot_mode=cot, system_prompt=text,
                                            temperature=temperature, ordering_seed=spec.seed), slots


def reusable(spec: Spec) -> dict[int, int]:
    """How many of a Spec's slots would be filled from answers, per endpoint id (for the estimate)."""
    counts: dict[int, int] = {}
    if not spec.reuse:
        return counts
    for condition, slots in _planned_slots(spec):
        prompts = _Prompts(condition)
        wanted = [prompts.key(question, paraphrase, seed) for question, paraphrase, seed in slots]
        found = originals(condition, spec.max_tokens, set(wanted), spec.reuse)
        counts[condition.endpoint_id] = counts.get(condition.endpoint_id, 0) + sum(key in found for key in wanted)
    return counts


def fill(conditions: Iterable[Condition], max_tokens: int, reuse: bool | tuple[int, ...]) -> int:
    """Fill the conditions' pending slots whose request was answered before from those answers (marked done
    and linked, with no call) and announce them like generated ones. Returns slots filled. Caller is inside
    the transaction that made the slots."""
    filled: list[Transcript] = []
    now = timezone.now()
    for condition in conditions:
        slots = list(condition.transcripts.filter(status=Transcript.Status.PENDING).select_related("question"))
        prompts = _Prompts(condition)
        keys = {slot.pk: prompts.key(slot.question, slot.paraphrase_index, slot.seed) for slot in slots}
        found = originals(condition, max_tokens, set(keys.values()), reuse, condition.experiment_id)
        sources = Transcript.objects.in_bulk(set(found.values()))
        for slot in slots:
            origin = found.get(keys[slot.pk])
            if origin is None:
                continue
            source = sources[origin]
            for name in COPIED:
                setattr(slot, name, getattr(source, name))
            slot.prompt_hash, slot.reused_from_id = keys[slot.pk][0], origin
            slot.status, slot.finished_at, slot.attempts = Transcript.Status.DONE, now, 0
            filled.append(slot)
    Transcript.objects.bulk_update(
        filled, [*COPIED, "prompt_hash", "reused_from", "status", "finished_at", "attempts"], batch_size=1000
    )
    if filled:
        aggregates.refresh_groups({(slot.condition_id, slot.question_id) for slot in filled})
        transaction.on_commit(lambda: announce_finished(filled))
    return len(filled)
