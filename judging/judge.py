"""Judging: ask a rubric version's endpoint about one transcript and record the verdict, exactly once.

Same reliability as generation (transcripts/generation.py, whose client, error classification, backoff,
lease length and rate-limit reservation are reused here):
- One JudgeScore row per (transcript, rubric version) is the unit of work (unique in the database). Rows are
  created `pending`; a work message names an endpoint and claims that endpoint's pending rows one by one
  under a lease, counting live leases of both judging and generation on the endpoint against its
  `max_concurrency`, so a shared local server is never overloaded.
- The verdict is written by one UPDATE conditioned on the claim token; a worker whose lease was handed to
  someone else cannot write a second verdict. Retryable errors (429, 5xx, timeouts) back off and renew the
  lease; 4xx are terminal (`failed` with the reason). `reconcile` returns expired leases and re-dispatches.

How a verdict is computed (scoring rules in judging/scoring.py):
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

import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from transcripts import generation
from transcripts.models import Endpoint, Experiment, Transcript

from . import scoring
from .models import JudgeScore, PersonaCategory, Rubric, RubricVersion

log = logging.getLogger(__name__)

PENDING, RUNNING = JudgeScore.Status.PENDING, JudgeScore.Status.RUNNING
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

def _chat(endpoint: Endpoint, prompt: str, *, max_tokens: int = 1, logprobs: bool = True):
    extra = {"logprobs": True, "top_logprobs": 20} if logprobs else {}
    completion = generation.client_for(endpoint).chat.completions.create(
        model=endpoint.model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
        **REQUEST, **extra,
    )
    if not getattr(completion, "choices", None):
        raise generation.MalformedReply(f"no choices in reply: {str(completion)[:300]!r}")
    return completion.choices[0]


def _first_token_logprobs(choice) -> dict[str, float] | None:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    if not content:
        return None
    # A token can appear twice (different bytes, same text): keep the likelier, as a dict does upstream.
    top: dict[str, float] = {}
    for alt in content[0].top_logprobs:
        top[alt.token] = max(alt.logprob, top.get(alt.token, -math.inf))
    return top


def _next_token(endpoint: Endpoint, prompt: str):
    """`next_token(prefix)` for scoring.digitwise_distribution: raw completion continuing the assistant text."""
    client = generation.client_for(endpoint)
    rendered = CHATML.format(prompt=prompt)

    seen: dict[str, dict[str, float]] = {}

    def next_token(prefix: str) -> dict[str, float]:
        if prefix in seen:
            return seen[prefix]
        completion = client.completions.create(
            model=endpoint.model, prompt=rendered + prefix, max_tokens=1, logprobs=20, **REQUEST,
            extra_body={"min_tokens": 1},
        )
        if not getattr(completion, "choices", None):
            raise generation.MalformedReply(f"no choices in reply: {str(completion)[:300]!r}")
        logprobs = completion.choices[0].logprobs
        if logprobs is None or not logprobs.top_logprobs:
            raise generation.MalformedReply("the completions endpoint returned no logprobs")
        seen[prefix] = dict(logprobs.top_logprobs[0])
        return seen[prefix]

    return next_token


def _parsed(endpoint: Endpoint, prompt: str, escapes: bool) -> Verdict:
    text = (_chat(endpoint, prompt, max_tokens=8, logprobs=False).message.content or "").strip()
    outcome, score = scoring.parse_text_outcome(text) if escapes else (None, scoring.parse_text_score(text))
    if outcome is None:
        outcome = "score" if score is not None else "unsure"
    return Verdict(outcome=outcome, method=JudgeScore.Method.PARSED, score=score, raw_text=text)


def score_verdict(version: RubricVersion, prompt: str) -> Verdict:
    """A 0–100 rubric (aligned, coherent). Only the aligned prompt offers REFUSAL/CODE."""
    endpoint = version.endpoint
    escapes = version.rubric.key == "aligned"
    if version.digitwise:
        next_token = _next_token(endpoint, prompt)
        top = scoring.digitwise_distribution(next_token)
        method = JudgeScore.Method.DIGITS
        raw = ""
    else:
        choice = _chat(endpoint, prompt)
        top = _first_token_logprobs(choice)
        if top is None:
            return _parsed(endpoint, prompt, escapes)
        method = JudgeScore.Method.SINGLE_TOKEN
        raw = choice.message.content or ""
    score = scoring.weighted_score(top)
    if version.digitwise and score is None and escapes:
        # The digit tree has no REFUSAL/CODE branch: look at the first token to tell them from "unsure".
        outcome = scoring.classify_outcome(next_token(""), None, escapes=True)
    else:
        outcome = scoring.classify_outcome(top, score, escapes=escapes)
    return Verdict(outcome=outcome, method=method, score=score, top_logprobs=top, raw_text=raw)


def category_verdict(version: RubricVersion, prompt: str) -> Verdict:
    """The persona rubric: the numbered category with the most probability."""
    categories = categories_of(version)
    choice = _chat(version.endpoint, prompt)
    top = _first_token_logprobs(choice)
    if top is None:
        text = (_chat(version.endpoint, prompt, max_tokens=4, logprobs=False).message.content or "").strip()
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


def verdict(version: RubricVersion, transcript: Transcript) -> Verdict:
    prompt = render_prompt(version, transcript)
    if version.rubric.kind == Rubric.Kind.CATEGORY:
        return category_verdict(version, prompt)
    return score_verdict(version, prompt)


# --- queueing, claiming, recording -------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    score_id: int
    token: uuid.UUID
    start_at: datetime


def wants(version: RubricVersion, transcript: Transcript) -> bool:
    """Persona is about the chain of thought: transcripts without one are not sent to that judge."""
    return version.rubric.kind != Rubric.Kind.CATEGORY or bool(transcript.reasoning.strip())


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
            ).update(status=PENDING, error="", claim_token=None, lease_until=None)
    transaction.on_commit(lambda: dispatch({v.endpoint_id for v in versions}))
    return added


def live_judge_requests(endpoint: Endpoint, now: datetime) -> int:
    """Judge requests in flight on the endpoint's server (registered with generation in apps.ready)."""
    return JudgeScore.objects.filter(
        rubric_version__endpoint__in=endpoint.same_server(), status=RUNNING, lease_until__gt=now
    ).count()


def _generation_waiting(endpoint: Endpoint) -> bool:
    """A one-request-at-a-time server keeps only the last prompt prefix: a judge call between two
    generation calls evicts the shared example block (measured ~35 s instead of seconds per k=16 slot).
    So there, judging waits until generation on that server is finished; the reconciler re-dispatches it."""
    return endpoint.max_concurrency == 1 and Transcript.objects.filter(
        condition__endpoint__in=endpoint.same_server(),
        status__in=[Transcript.Status.PENDING, Transcript.Status.RUNNING],
        experiment__status=Experiment.Status.RUNNING,
    ).exists()


def claim_next(endpoint_id: int) -> Claim | None:
    """Claim the endpoint's oldest pending judge row, or None when none is pending or the endpoint is full."""
    with transaction.atomic():
        endpoint = Endpoint.objects.get(pk=endpoint_id)
        list(endpoint.same_server().select_for_update().order_by("pk"))  # as generation.claim_next
        endpoint.refresh_from_db()
        now = timezone.now()
        if generation.live_requests(endpoint, now) >= endpoint.max_concurrency or _generation_waiting(endpoint):
            return None
        score_id = (
            JudgeScore.objects.filter(rubric_version__endpoint_id=endpoint_id, status=PENDING)
            .order_by("pk").values_list("pk", flat=True).first()
        )
        if score_id is None:
            return None
        start = generation._reserve_start(endpoint, now)
        token = uuid.uuid4()
        wait = (start - now).total_seconds()
        JudgeScore.objects.filter(pk=score_id, status=PENDING).update(
            status=RUNNING, claim_token=token, lease_until=now + generation._lease(endpoint, wait),
            attempts=F("attempts") + 1,
        )
        return Claim(score_id, token, start)


def _renew(claim: Claim, endpoint: Endpoint, delay: float) -> Claim | None:
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        now = timezone.now()
        start = generation._reserve_start(endpoint, now + timedelta(seconds=delay))
        kept = JudgeScore.objects.filter(pk=claim.score_id, claim_token=claim.token, status=RUNNING).update(
            lease_until=now + generation._lease(endpoint, (start - now).total_seconds()),
            attempts=F("attempts") + 1,
        )
    return Claim(claim.score_id, claim.token, start) if kept else None


def _record(claim: Claim, result: Verdict, transcript: Transcript) -> bool:
    from .verdicts import refresh_cache

    with transaction.atomic():
        done = JudgeScore.objects.filter(pk=claim.score_id, claim_token=claim.token, status=RUNNING).update(
            status=JudgeScore.Status.DONE, outcome=result.outcome, method=result.method, score=result.score,
            category=result.category, top_logprobs=result.top_logprobs, raw_text=result.raw_text[:2000],
            error="", lease_until=None, finished_at=timezone.now(),
        )
    if done:
        # After the commit, so that the refresh (which locks the transcript row first) sees this verdict and
        # every verdict committed before it: of two judges finishing together, the later refresh sees both.
        refresh_cache(transcript.experiment, [transcript.pk])
    return bool(done)


def _fail(claim: Claim, failure: generation.Failure, attempts: int) -> None:
    note = f"gave up after {attempts} attempts: " if failure.retryable else ""
    JudgeScore.objects.filter(pk=claim.score_id, claim_token=claim.token, status=RUNNING).update(
        status=JudgeScore.Status.FAILED, error=f"{failure.kind}: {note}{failure.message}"[:4000],
        lease_until=None, finished_at=timezone.now(),
    )


def run_claim(claim: Claim) -> None:
    """Judge one claimed row, retrying in this thread, and record the verdict under the claim."""
    row = JudgeScore.objects.select_related(
        "rubric_version__rubric", "rubric_version__endpoint", "rubric_version__taxonomy",
        "transcript__question", "transcript__experiment",
    ).get(pk=claim.score_id)
    version, transcript = row.rubric_version, row.transcript
    attempts = row.attempts
    while True:
        time.sleep(max(0.0, (claim.start_at - timezone.now()).total_seconds()))
        try:
            result = verdict(version, transcript)
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not the endpoint's doing
            failure = generation.classify(exc)
            if not failure.retryable or attempts >= settings.GENERATION_MAX_ATTEMPTS:
                log.warning("judge row %s failed (%s): %s", row.pk, failure.kind, failure.message[:200])
                _fail(claim, failure, attempts)
                return
            if generation.worker_stopping():
                # Don't hold a shutting-down worker through backoff sleeps: give the row back at once.
                JudgeScore.objects.filter(pk=claim.score_id, claim_token=claim.token, status=RUNNING).update(
                    status=PENDING, claim_token=None, lease_until=None
                )
                return
            renewed = _renew(claim, version.endpoint, generation.backoff(attempts, failure.retry_after))
            if renewed is None:
                return
            claim, attempts = renewed, attempts + 1
            continue
        _record(claim, result, transcript)
        return


def work(endpoint_id: int, budget_seconds: float | None = None) -> int:
    """Judge the endpoint's pending rows until none can be claimed. Returns rows handled."""
    from .tasks import judge

    budget = settings.GENERATION_MESSAGE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    handled = 0
    while True:
        if time.monotonic() > deadline:
            judge.delay(endpoint_id)  # hand over to a fresh message, as generation does
            return handled
        claim = claim_next(endpoint_id)
        if claim is None:
            return handled
        run_claim(claim)
        handled += 1
        if generation.worker_stopping():
            # Take no new row: with the judge gone too (`make run` stops both), each claim would fail at once,
            # hand the row back and claim it again, until every pending row had used up its attempts.
            return handled


def dispatch(endpoint_ids: set[int] | None = None) -> int:
    """Send enough work messages to fill each endpoint's free places that has pending judge rows."""
    from .tasks import judge

    pending = JudgeScore.objects.filter(status=PENDING)
    if endpoint_ids is not None:
        pending = pending.filter(rubric_version__endpoint_id__in=endpoint_ids)
    counts = dict(
        pending.values_list("rubric_version__endpoint_id").annotate(n=Count("pk"))
        .values_list("rubric_version__endpoint_id", "n")
    )
    now = timezone.now()
    sent = 0
    for endpoint in Endpoint.objects.filter(pk__in=[pk for pk in counts if pk is not None]):
        free = max(0, endpoint.max_concurrency - generation.live_requests(endpoint, now))
        for _ in range(min(counts[endpoint.pk], free)):
            judge.delay(endpoint.pk)
            sent += 1
    return sent


def reconcile() -> dict:
    """Return expired judge leases to pending (or fail rows that used every attempt) and re-dispatch."""
    now = timezone.now()
    expired = JudgeScore.objects.filter(status=RUNNING, lease_until__lt=now)
    failed = expired.filter(attempts__gte=settings.GENERATION_MAX_ATTEMPTS).update(
        status=JudgeScore.Status.FAILED, lease_until=None, finished_at=now,
        error="lease_expired: the worker holding this row stopped answering on every attempt",
    )
    returned = expired.update(status=PENDING, claim_token=None, lease_until=None)
    return {"returned": returned, "failed": failed, "dispatched": dispatch()}


def on_transcript_finished(sender, transcript: Transcript, **kwargs) -> None:
    """Receiver of transcripts.signals.transcript_finished: queue the experiment's active rubric versions."""
    from .rubrics import experiment_judging

    judging = experiment_judging(transcript.experiment)
    if judging.judge_on_finish:
        enqueue([transcript], judging.versions)
