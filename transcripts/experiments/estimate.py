"""What an experiment will cost before it runs: calls, prompt tokens, at most completion tokens and dollars per
endpoint, generation first, then the judge (whose requests judging supplies through judge_requests_wanted).

Costs are the one formula's (Endpoint.cost): the Batch API's prices on a batch endpoint, and the prompt tokens
CACHE_ASSUMPTION projects as cached at the cached price. `list_cost` is the same work at list price, with no
caching, batch or reuse, so the difference is the projected saving."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from .. import prompting
from ..signals import judge_requests_wanted
from .prompts import fixed_tokens, prefix_tokens
from .reuse import reusable
from .spec import Spec

CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least this many tokens (in steps of 128)
CACHE_ASSUMPTION = (
    "Cached prompt tokens are projected from the prefix-grouped order: every slot of a condition but the first "
    "finds the condition's k examples (its shared prefix) in the provider's prompt cache, nothing else is "
    f"cached, and only example blocks of at least {CACHE_MIN_TOKENS:,} tokens are. This holds when a condition's "
    "slots run within the provider's cache lifetime (OpenAI: minutes idle), as the prefix-grouped order makes "
    "them; a cache spread over several replicas hits less."
)


@dataclass(frozen=True)
class JudgeRequest:
    """A judge request every finished transcript gets (judging answers judge_requests_wanted with these)."""

    rubric: str
    prompt_template: str
    needs_reasoning: bool  # only transcripts with a chain of thought are asked


@dataclass(frozen=True)
class EndpointEstimate:
    purpose: str  # "generation", or "judge (aligned, coherent, persona)"
    endpoint: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int  # an upper bound: every generation at max_tokens
    cost: Decimal  # at the endpoint's prices: cached tokens at the cached price, batch prices on a batch endpoint
    cached_tokens: int = 0  # of prompt_tokens, projected as cached (CACHE_ASSUMPTION)
    reused: int = 0  # slots filled from earlier answers (a definition's `reuse:`): no call, no cost
    list_cost: Decimal | None = None  # the calls at list price, nothing cached, no Batch API, nothing reused
    batch_api: bool = False

    @property
    def saving(self) -> Decimal:
        return (self.list_cost or self.cost) - self.cost


def _judge_estimate(spec: Spec) -> EndpointEstimate | None:
    """The judge's share: each transcript gets every judge request (the persona rubric only with CoT), a
    prompt of the rubric's template, the question and at most max_tokens of answer, and a one-token verdict."""
    if spec.judge is None:
        return None
    requests = [r for _receiver, answer in judge_requests_wanted.send(sender=Spec, judge=spec.judge) for r in answer]
    # Transcripts per (CoT mode, question): every other axis multiplies them.
    per_cell = (len(spec.endpoints) * len(spec.datasets) * len(spec.k) * len(spec.system_prompts)
                * len(spec.temperatures) * spec.samples)
    calls = prompt_tokens = 0
    for request, cot, question in itertools.product(requests, spec.cot, spec.questions):
        if request.needs_reasoning and cot == "off":
            continue
        calls += per_cell
        asked = prompting.estimate_tokens([{"content": request.prompt_template + question.text}]) + spec.max_tokens
        prompt_tokens += per_cell * asked
    if not calls:
        return None
    rubrics = ", ".join(dict.fromkeys(r.rubric for r in requests))
    # Judge prompts share only the rubric's text before the question: nothing is projected as cached.
    return EndpointEstimate(
        purpose=f"judge ({rubrics})", endpoint=spec.judge.name, model=spec.judge.model, calls=calls,
        prompt_tokens=prompt_tokens, completion_tokens=calls, cost=spec.judge.cost(prompt_tokens, calls),
        list_cost=spec.judge.cost(prompt_tokens, calls, batch_api=False), batch_api=spec.judge.batch_api,
    )


def estimate(spec: Spec) -> list[EndpointEstimate]:
    """Calls, prompt tokens (and how many are projected cached), at most completion tokens, reused slots and
    cost per endpoint, generation first, then the judge. Reused slots make no call: they are left out of the
    calls and tokens of their endpoint, pro rata (their prompts are the same size as the others')."""
    per_endpoint_prompt = per_endpoint_cached = 0
    per_condition = len(spec.questions) * spec.samples
    for dataset in spec.datasets:
        prefixes = prefix_tokens(dataset, spec.seed, spec.k)
        for (_name, text), cot, k in itertools.product(spec.system_prompts, spec.cot, spec.k):
            for q in spec.questions:
                per_endpoint_prompt += (prefixes[k] + fixed_tokens(text, dataset, k, cot, q)) * spec.samples
            if prefixes[k] >= CACHE_MIN_TOKENS:
                per_endpoint_cached += prefixes[k] * (per_condition - 1)
    per_endpoint_prompt *= len(spec.temperatures)
    per_endpoint_cached *= len(spec.temperatures)
    slots = (len(spec.datasets) * len(spec.k) * len(spec.cot) * len(spec.system_prompts) * len(spec.temperatures)
             * per_condition)
    reused = reusable(spec)
    rows = []
    for e in spec.endpoints:
        share = 1 - reused.get(e.pk, 0) / slots
        calls = slots - reused.get(e.pk, 0)
        prompt, cached = round(per_endpoint_prompt * share), round(per_endpoint_cached * share)
        completion = calls * spec.max_tokens
        rows.append(EndpointEstimate(
            purpose="generation", endpoint=e.name, model=e.model, calls=calls, prompt_tokens=prompt,
            completion_tokens=completion, cost=e.cost(prompt, completion, cached), cached_tokens=cached,
            reused=reused.get(e.pk, 0), list_cost=e.cost(per_endpoint_prompt, slots * spec.max_tokens, batch_api=False),
            batch_api=e.batch_api,
        ))
    judged = _judge_estimate(spec)
    return rows + ([judged] if judged else [])
