"""What an experiment will cost before it runs: calls, prompt tokens, at most completion tokens and dollars per
endpoint, generation first, then the judge (whose requests judging supplies through judge_requests_wanted)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from .. import prompting
from ..signals import judge_requests_wanted
from .prompts import fixed_tokens, prefix_tokens
from .spec import Spec


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
    cost: Decimal


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
    return EndpointEstimate(
        purpose=f"judge ({rubrics})", endpoint=spec.judge.name, model=spec.judge.model, calls=calls,
        prompt_tokens=prompt_tokens, completion_tokens=calls, cost=spec.judge.cost(prompt_tokens, calls),
    )


def estimate(spec: Spec) -> list[EndpointEstimate]:
    """Calls, prompt tokens, at most completion tokens, and cost per endpoint (before any prefix caching),
    generation first, then the judge."""
    per_endpoint_prompt = 0
    for dataset in spec.datasets:
        prefixes = prefix_tokens(dataset, spec.seed, spec.k)
        for (_name, text), cot, k, q in itertools.product(spec.system_prompts, spec.cot, spec.k, spec.questions):
            per_endpoint_prompt += (prefixes[k] + fixed_tokens(text, dataset, k, cot, q)) * spec.samples
    per_endpoint_prompt *= len(spec.temperatures)
    calls = (len(spec.datasets) * len(spec.k) * len(spec.cot) * len(spec.system_prompts) * len(spec.temperatures)
             * len(spec.questions) * spec.samples)
    completion = calls * spec.max_tokens
    rows = [
        EndpointEstimate(
            purpose="generation", endpoint=e.name, model=e.model, calls=calls, prompt_tokens=per_endpoint_prompt,
            completion_tokens=completion, cost=e.cost(per_endpoint_prompt, completion),
        )
        for e in spec.endpoints
    ]
    judged = _judge_estimate(spec)
    return rows + ([judged] if judged else [])
