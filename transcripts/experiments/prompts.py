"""The prompts of a definition's slots, before any is sent: the dataset rows they are built from (cached per
process) and estimates of their size in tokens, for the context check (spec.py) and the cost estimate
(estimate.py). Generation rebuilds each slot's prompt from the same rows."""

from __future__ import annotations

from functools import lru_cache

from .. import prompting
from ..models import Condition, Dataset, Example, Question


def dataset_examples(dataset: Dataset) -> tuple[tuple[dict, ...], ...]:
    """A dataset version's rows in file order, cached per process (a version's content never changes; the
    content hash is part of the key in case SQLite hands a deleted dataset's id to a new one)."""
    return _examples(dataset.pk, dataset.content_hash)


@lru_cache(maxsize=8)
def _examples(dataset_id: int, content_hash: str) -> tuple[tuple[dict, ...], ...]:
    rows = Example.objects.filter(dataset_id=dataset_id).order_by("position").values_list("messages", flat=True)
    return tuple(tuple(messages) for messages in rows)


def prefix_tokens(dataset: Dataset, seed: int, ks: tuple[int, ...]) -> dict[int, int]:
    """Estimated tokens of the first k examples of the permutation, for each k (one pass over the order)."""
    examples = dataset_examples(dataset)
    order = prompting.permutation(len(examples), seed, dataset.content_hash)
    result, total, wanted = {}, 0, set(ks)
    if 0 in wanted:
        result[0] = 0
    for i, index in enumerate(order[: max(ks)], start=1):
        turns = [m for m in examples[index] if m["role"] in ("user", "assistant")]
        total += prompting.estimate_tokens(turns)
        if i in wanted:
            result[i] = total
    return result


def fixed_tokens(system_prompt: str, dataset: Dataset, k: int, cot: str, question: Question) -> int:
    """Estimated tokens of everything but the examples: system message and the final question turn."""
    system_turn = prompting.dataset_system_prompt(dataset_examples(dataset)) if k else ""
    messages = prompting.build_messages(
        examples=(), dataset_key="", k=0, ordering_seed=0, question=max(question.paraphrases or [question.text],
                                                                         key=len),
        cot_mode=cot, system_prompt="\n\n".join(p for p in (system_prompt, system_turn) if p),
        question_system_prompt=question.system_prompt,
    )
    return prompting.estimate_tokens(messages)


def slot_messages(condition: Condition, question: Question, paraphrase_index: int) -> list[dict]:
    """The prompt of a slot, rebuilt from its inputs: what generation sends, the transcript page shows and
    reuse compares (the condition and question may be unsaved)."""
    paraphrases = question.paraphrases or [question.text]
    dataset = condition.dataset
    return prompting.build_messages(
        examples=dataset_examples(dataset) if dataset else (),
        dataset_key=dataset.content_hash if dataset else "",
        k=condition.k,
        ordering_seed=condition.ordering_seed,
        question=paraphrases[min(paraphrase_index, len(paraphrases) - 1)],
        cot_mode=condition.cot_mode,
        system_prompt=condition.system_prompt,
        question_system_prompt=question.system_prompt,
    )
