"""Judging: ask a rubric version's endpoint about one transcript and record the verdict, exactly once.

Judging is the call engine's second job (transcripts/engine.py: claims, leases, server-wide limits, retries,
exactly-once recording, reconcile are all there). One JudgeScore row per (transcript, rubric version) is the
unit of work (unique in the database); rows are created `pending` by `enqueue`. This module says what to ask
and how to record it.

How a verdict is computed (scoring rules in judging/results/scoring.py):
- one token per number (GPT-4o): chat request, `max_tokens=1, temperature=0, logprobs, top_logprobs=20,
  seed=0`, as upstream; method `single_token`.
- one digit per token (`RubricVersion.digitwise`, e.g. SmolLM2): raw completions on the ChatML rendering of the
  same user message, first digit then each likely prefix's next digit or end; method `digits`.
  Chat APIs cannot continue an assistant message on every server (llama.cpp's cannot), so this path needs a
  `/v1/completions` endpoint and a ChatML model (SmolLM2, Qwen); see docs/judging.md.
- no logprobs in the reply: the number (or REFUSAL/CODE) is parsed from a short text reply; method `parsed`.
- persona: the categories are numbered 1…N in the prompt; the category with the most probability on its
  number wins (or the parsed number without logprobs); fewer than 0.25 on all numbers is `unsure`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import openai
from django.db import transaction
from django.db.models import QuerySet

from transcripts import engine, prompting
from transcripts.models import Endpoint, Transcript

from .. import verdicts
from ..models import JudgeScore, PersonaCategory, Rubric, RubricVersion
from ..reports import warm
from . import scoring

PENDING = JudgeScore.Status.PENDING
CHATML = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
REQUEST = {"temperature": 0, "seed": 0}


@dataclass(frozen=True)
class Verdict:
    outcome: str
    method: str
    score: float | None = None
    category: PersonaCategory | None = None
    top_logprobs: dict[str, float] | None = None
    raw_text: str = ""


# --- what to ask -------------------------------------------------------------------------------------------

def categories_of(version: RubricVersion) -> list[PersonaCategory]:
    return list(version.taxonomy.categories.order_by("position")) if version.taxonomy_id else []


def render_prompt(version: RubricVersion, transcript: Transcript) -> str:
    question = transcript.question
    paraphrases = question.paraphrases or [question.text]
    categories = "\n".join(
        f"{number}. {c.name}: {c.description}" for number, c in enumerate(categories_of(version), start=1)
    )
    # format_map with a fixed dict: the model's answer is data, never a template (no "{…}" expansion inside it).
    return version.prompt_template.format_map({
        "question": paraphrases[min(transcript.paraphrase_index, len(paraphrases) - 1)],
        "answer": transcript.answer,
        "reasoning": transcript.reasoning or "(no reasoning)",
        "categories": categories,
    })


# --- calling the endpoint ----------------------------------------------------------------------------------

class Caller:
    """The requests one verdict makes to its endpoint, with the usage the server reported for all of them."""

    def __init__(self, client: openai.OpenAI, endpoint: Endpoint):
        self.client, self.endpoint, self.usage = client, endpoint, engine.Usage()

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint) -> Caller:
        return cls(engine.client_for(endpoint), endpoint)

    def chat(self, prompt: str, *, max_tokens: int = 1, logprobs: bool = True):
        extra = {"logprobs": True, "top_logprobs": 20} if logprobs else {}
        completion = self.client.chat.completions.create(
            model=self.endpoint.model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
            **REQUEST, **extra,
        )
        self.usage.add(completion)
        return engine.first_choice(completion)

    def next_token(self, prompt: str):
        """`next_token(prefix)` for scoring.digitwise_distribution: raw completion continuing the assistant text."""
        rendered = CHATML.format(prompt=prompt)
        seen: dict[str, dict[str, float]] = {}

        def next_token(prefix: str) -> dict[str, float]:
            if prefix in seen:
                return seen[prefix]
            completion = self.client.completions.create(
                model=self.endpoint.model, prompt=rendered + prefix, max_tokens=1, logprobs=20, **REQUEST,
                extra_body={"min_tokens": 1},
            )
            self.usage.add(completion)
            logprobs = engine.first_choice(completion).logprobs
            if logprobs is None or not logprobs.top_logprobs:
                raise engine.MalformedReply("the completions endpoint returned no logprobs")
            seen[prefix] = dict(logprobs.top_logprobs[0])
            return seen[prefix]

        return next_token


def _first_token_logprobs(choice) -> dict[str, float] | None:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    if not content:
        return None
    # A token can appear twice (different bytes, same text): keep the likelier, as a dict does upstream.
    top: dict[str, float] = {}
    for alt in content[0].top_logprobs:
        top[alt.token] = max(alt.logprob, top.get(alt.token, -math.inf))
    return top


def _parsed(caller: Caller, prompt: str, escapes: bool) -> Verdict:
    text = (caller.chat(prompt, max_tokens=8, logprobs=False).message.content or "").strip()
    outcome, score = scoring.parse_text_outcome(text) if escapes else (None, scoring.parse_text_score(text))
    if outcome is None:
        outcome = verdicts.classify_outcome({}, score, escapes=False)
    return Verdict(outcome=outcome, method=JudgeScore.Method.PARSED, score=score, raw_text=text)


def score_verdict(version: RubricVersion, prompt: str, caller: Caller | None = None) -> Verdict:
    """A 0–100 rubric (aligned, coherent). Only the aligned prompt offers REFUSAL/CODE."""
    caller = caller or Caller.for_endpoint(version.endpoint)
    escapes = version.rubric.key == "aligned"
    if version.digitwise:
        next_token = caller.next_token(prompt)
        top = scoring.digitwise_distribution(next_token)
        method = JudgeScore.Method.DIGITS
        raw = ""
    else:
        choice = caller.chat(prompt)
        top = _first_token_logprobs(choice)
        if top is None:
            return _parsed(caller, prompt, escapes)
        method = JudgeScore.Method.SINGLE_TOKEN
        raw = choice.message.content or ""
    score = scoring.weighted_score(top)
    if version.digitwise and score is None and escapes:
        # The digit tree has no REFUSAL/CODE branch: look at the first token to tell them from "unsure".
        outcome = verdicts.classify_outcome(next_token(""), None, escapes=True)
    else:
        outcome = verdicts.classify_outcome(top, score, escapes=escapes)
    return Verdict(outcome=outcome, method=method, score=score, top_logprobs=top, raw_text=raw)


def category_verdict(version: RubricVersion, prompt: str, caller: Caller | None = None) -> Verdict:
    """The persona rubric: the numbered category with the most probability."""
    caller = caller or Caller.for_endpoint(version.endpoint)
    categories = categories_of(version)
    choice = caller.chat(prompt)
    top = _first_token_logprobs(choice)
    if top is None:
        text = (caller.chat(prompt, max_tokens=4, logprobs=False).message.content or "").strip()
        number = scoring.parse_text_score(text)
        found = categories[int(number) - 1] if number and 1 <= number <= len(categories) else None
        return Verdict(outcome="category" if found else "unsure", method=JudgeScore.Method.PARSED,
                       category=found, raw_text=text)
    mass: dict[int, float] = {}
    for token, logprob in top.items():
        number = scoring.number_of(token)
        if number is not None and 1 <= number <= len(categories):
            mass[number] = mass.get(number, 0.0) + math.exp(logprob)
    raw = choice.message.content or ""
    if sum(mass.values()) < scoring.MIN_NUMBER_MASS:
        return Verdict(outcome="unsure", method=JudgeScore.Method.SINGLE_TOKEN, top_logprobs=top, raw_text=raw)
    best = max(mass, key=mass.get)
    return Verdict(outcome="category", method=JudgeScore.Method.SINGLE_TOKEN, category=categories[best - 1],
                   top_logprobs=top, raw_text=raw)


def verdict(version: RubricVersion, transcript: Transcript, caller: Caller | None = None) -> Verdict:
    prompt = render_prompt(version, transcript)
    if version.rubric.kind == Rubric.Kind.CATEGORY:
        return category_verdict(version, prompt, caller)
    return score_verdict(version, prompt, caller)


# --- the engine's judging job -------------------------------------------------------------------------------

def wants(version: RubricVersion, transcript: Transcript) -> bool:
    """Persona is about the chain of thought: transcripts without one are not sent to that judge."""
    return version.rubric.kind != Rubric.Kind.CATEGORY or bool(transcript.reasoning.strip())


class Judging(engine.Job):
    name = "judging"
    model = JudgeScore
    endpoint_field = "rubric_version__endpoint"
    experiment_field = "transcript__experiment"

    def pending(self, endpoint_id: int) -> QuerySet:
        return JudgeScore.objects.filter(rubric_version__endpoint_id=endpoint_id, status=PENDING).order_by("pk")

    def load(self, row_id: int) -> JudgeScore:
        return JudgeScore.objects.select_related(
            "rubric_version__rubric", "rubric_version__endpoint", "rubric_version__taxonomy",
            "transcript__question", "transcript__experiment",
        ).get(pk=row_id)

    def estimated_tokens(self, row: JudgeScore) -> int:
        return len(render_prompt(row.rubric_version, row.transcript)) // prompting.CHARS_PER_TOKEN + 8

    def ask(self, client: openai.OpenAI, endpoint: Endpoint, row: JudgeScore) -> engine.Answer:
        caller = Caller(client, endpoint)
        result = verdict(row.rubric_version, row.transcript, caller)
        return engine.Answer(
            fields={"outcome": result.outcome, "method": result.method, "score": result.score,
                    "category": result.category, "top_logprobs": result.top_logprobs,
                    "raw_text": result.raw_text[:2000]},
            usage=caller.usage,
        )

    def recorded(self, row_id: int) -> None:
        # In the verdict's own transaction: the refresh locks the transcript row first and then reads (each
        # statement a fresh snapshot under READ COMMITTED), so of two judges finishing together the later
        # refresh waits for the earlier commit and sees both verdicts; verdict and cache commit together.
        transcript = Transcript.objects.select_related("experiment").get(judge_scores__pk=row_id)
        verdicts.refresh_cache(transcript.experiment, [transcript.pk])
        # The experiment's reports are refreshed ahead of the next view, after the commit (judging.reports).
        warm("experiment", transcript.experiment_id)

    def send(self, endpoint_id: int) -> None:
        from ..tasks import judge

        judge.delay(endpoint_id)


JUDGING = engine.register(Judging())


def claim_next(endpoint_id: int) -> engine.Claim | None:
    return engine.claim_next(JUDGING, endpoint_id)


def work(endpoint_id: int, budget_seconds: float | None = None) -> int:
    """Judge the endpoint's pending rows until none can be claimed. Returns rows handled."""
    return engine.work(JUDGING, endpoint_id, budget_seconds)


def enqueue(transcripts, versions: list[RubricVersion], *, retry_failed: bool = False) -> int:
    """Create the pending JudgeScore rows (existing verdicts are kept: idempotent) and dispatch work.
    `transcripts` is a queryset or list of done transcripts. Returns how many rows were added or reset."""
    versions = [v for v in versions if v.endpoint_id is not None]
    transcripts = list(transcripts)
    rows = [
        JudgeScore(transcript=t, rubric_version=v)
        for t in transcripts for v in versions if wants(v, t)
    ]
    with transaction.atomic():
        before = JudgeScore.objects.filter(rubric_version__in=versions).count()
        JudgeScore.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
        added = JudgeScore.objects.filter(rubric_version__in=versions).count() - before
        if retry_failed:
            added += JudgeScore.objects.filter(
                rubric_version__in=versions, status=JudgeScore.Status.FAILED,
                transcript_id__in=[t.pk for t in transcripts],
            ).update(status=PENDING, error="", error_kind="", attempts=0, claim_token=None, lease_until=None)
    transaction.on_commit(lambda: dispatch({v.endpoint_id for v in versions}))
    return added


def dispatch(endpoint_ids: set[int] | None = None) -> int:
    """Fill each endpoint's free places with work messages for pending judge rows."""
    pending = JudgeScore.objects.all()
    if endpoint_ids is not None:
        pending = pending.filter(rubric_version__endpoint_id__in=endpoint_ids)
    return engine.dispatch(JUDGING, pending)


def reconcile() -> dict:
    """Return expired judge leases to pending (or fail rows that used every attempt) and re-dispatch."""
    returned, failed = engine.expire_leases(JUDGING)
    return {"returned": returned, "failed": failed, "dispatched": dispatch()}


def on_transcript_finished(sender, transcript: Transcript, **kwargs) -> None:
    """Receiver of transcripts.signals.transcript_finished: queue the experiment's active rubric versions."""
    from .rubrics import experiment_judging

    judging = experiment_judging(transcript.experiment)
    if judging.judge_on_finish:
        enqueue([transcript], judging.versions)
