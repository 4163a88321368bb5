"""Defining an experiment: a validated Spec becomes the Experiment row, one Condition per combination of the
axes, and its transcript slots in dispatch order. An experiment is defined once, under a name no other has."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from django.db import IntegrityError, transaction

from .. import prompting
from ..models import Condition, Experiment, Transcript
from ..signals import experiment_defined
from . import reuse
from .spec import NameTaken, Spec, parse_spec

# Slots of one experiment take dispatch_order experiment.pk * _ORDER_SPAN + rank, so a shared endpoint works
# through experiments in the order they were defined, each in prefix-grouped order.
_ORDER_SPAN = 10**10


SLOT_BATCH = 1000


def _slots(spec: Spec, experiment: Experiment, conditions: list[Condition]) -> Iterator[Transcript]:
    """Every slot of the experiment in dispatch order, made one at a time. prompting.dispatch_key sorts by
    the condition's part first, then question position, then sample, so walking the conditions in the order
    of their part of the key, questions by position and samples ascending yields the sorted order."""
    def condition_key(condition: Condition) -> tuple:
        return prompting.dispatch_key(
            endpoint=condition.endpoint_name, dataset=condition.dataset_name,
            ordering_seed=condition.ordering_seed, system_prompt=condition.system_prompt, k=condition.k,
            cot_mode=condition.cot_mode, temperature=condition.temperature, question_position=0, sample_index=0,
        )[:-2]

    questions = sorted(spec.questions, key=lambda q: q.position)
    base = experiment.pk * _ORDER_SPAN
    rank = itertools.count(base)
    for condition in sorted(conditions, key=condition_key):
        for question in questions:
            for sample in range(spec.samples):
                seed = prompting.sample_seed(spec.seed, question.key, sample)
                yield Transcript(
                    experiment=experiment, condition=condition, question=question, sample_index=sample, seed=seed,
                    paraphrase_index=prompting.paraphrase_index(seed, len(question.paraphrases)),
                    dispatch_order=next(rank), announced=False,
                )


def refuse_taken_name(name: str) -> None:
    """Raise NameTaken if an experiment is called `name`. An experiment is defined once: reusing it under a
    new definition would give it a spec, thresholds and budget its conditions were never run with (and let
    anyone take over someone else's run by naming it)."""
    existing = Experiment.objects.filter(name=name).values_list("pk", flat=True).first()
    if existing is not None:
        raise NameTaken(_taken(name, existing))


def _taken(name: str, pk: int | None) -> str:
    number = f" (#{pk})" if pk else ""
    return (f"an experiment named {name!r} already exists{number}; experiments are never redefined: choose "
            "another name. Its owner or an admin runs it again with Resume or Retry failed on its page.")


def define_experiment(raw: dict | Spec, user=None) -> Experiment:
    """Create a new experiment, its conditions and transcript slots; NameTaken if the name is in use, and
    nothing changes. Conditions keep the endpoint versions current now, so work defined keeps calling the
    same server and model."""
    spec = raw if isinstance(raw, Spec) else parse_spec(raw)
    with transaction.atomic():
        refuse_taken_name(spec.name)
        try:
            with transaction.atomic():
                experiment = Experiment.objects.create(
                    name=spec.name, question_set=spec.question_set, seed=spec.seed, created_by=user,
                    description=spec.description, spec=spec.raw, samples=spec.samples, max_tokens=spec.max_tokens,
                    aligned_threshold=spec.aligned_threshold, coherent_threshold=spec.coherent_threshold,
                    budget_usd=spec.budget_usd,
                )
        except IntegrityError:  # the same name, defined by a concurrent request since the check above
            raise NameTaken(_taken(spec.name, None)) from None
        experiment_defined.send(sender=Experiment, experiment=experiment, judge=spec.judge)

        conditions = [
            Condition.objects.create(
                experiment=experiment, endpoint=endpoint, endpoint_name=endpoint.name, model_name=endpoint.model,
                dataset=dataset, dataset_name=dataset.name, k=k, cot_mode=cot, system_prompt_name=sp_name,
                system_prompt=sp_text, temperature=temperature, ordering_seed=spec.seed,
            )
            for endpoint, dataset, k, cot, (sp_name, sp_text), temperature in itertools.product(
                spec.endpoints, spec.datasets, spec.k, spec.cot, spec.system_prompts, spec.temperatures
            )
        ]

        # Slots stream into the database in batches: memory stays flat however large the definition.
        slots = _slots(spec, experiment, conditions)
        while batch := list(itertools.islice(slots, SLOT_BATCH)):
            Transcript.objects.bulk_create(batch)
        if spec.reuse:
            reuse.fill(conditions, spec.max_tokens, spec.reuse)
    return experiment
