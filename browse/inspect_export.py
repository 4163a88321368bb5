"""Export of a filtered transcript queryset as an Inspect eval log (`.eval`), which `inspect view` opens, written
with inspect_ai's own log API (EvalLog, EvalSample, write_eval_log).

Each transcript is one sample: its prompt rebuilt as the engine sent it (transcripts.generation.slot_messages;
an imported run whose in-context examples were not stored has its question alone, and says so in `prompt_note`),
the answer as an assistant message with its reasoning as a ContentReasoning block apart from the answer text,
and as scores EM Audit's verdicts and the human labels:
- `aligned`, `coherent` (0–100), `misaligned` (true/false) and `judge_category`: the cached verdicts of the
  experiment's active rubric versions;
- `human_consensus`: the auditors' consensus category;
- `auditor_<name>`: each auditor's label, its value {misaligned, alignment_score, primary} (what was asked), the
  note as the explanation and the categories and highlights in its metadata.
A verdict that does not exist (not judged, not labelled) is left out: an Inspect score always has a value.

The sample id is the question's id and the epoch the sample index + 1, so a log imported from Inspect comes back
with its own ids; where the export spans several conditions the id also names the condition (`wish@c12`).
The metadata carries the condition axes (`model`, `dataset`, `k`, `cot_mode`, `temperature`, …) under the
names the Inspect import reads, so an exported log imports back to the same slots.

An eval log is one file that inspect_ai writes whole, so the samples are held in memory: the export stops at
MAX_SAMPLES and asks for a narrower filter rather than exhaust the server.
"""

from __future__ import annotations

from pathlib import Path

from django.db.models import Max, Min, QuerySet
from django.utils import timezone
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ContentReasoning,
    ContentText,
    ModelOutput,
)
from inspect_ai.scorer import Score

from judging.models import Label
from transcripts import prompting
from transcripts.generation import slot_messages
from transcripts.models import Transcript

from .export_rows import keyset_chunks

MAX_SAMPLES = 20_000
CHUNK = 2_000
MESSAGE_TYPES = {"system": ChatMessageSystem, "user": ChatMessageUser}
VERDICTS = ("aligned", "coherent", "misaligned", "judge_category")


class TooManySamples(Exception):
    """The filter matches more transcripts than an eval log may hold; the message says so."""


def _prompt(transcript: Transcript) -> tuple[list[dict], str]:
    """The prompt as the engine sent it, or, where it cannot be rebuilt (e.g. an imported run whose in-context
    examples were not stored), the question alone and why."""
    try:
        return slot_messages(transcript), ""
    except ValueError as exc:
        condition = transcript.condition
        return prompting.build_messages(
            examples=(), dataset_key="", k=0, ordering_seed=0, question=transcript.question.text,
            cot_mode=condition.cot_mode, system_prompt=condition.system_prompt,
        ), f"in-context examples not exported: {exc}"


def _labels(transcripts: list[Transcript]) -> dict[int, list[Label]]:
    labels: dict[int, list[Label]] = {}
    for label in (Label.objects.filter(item__transcript__in=transcripts)
                  .select_related("auditor", "primary", "item").prefetch_related("categories", "highlights__category")
                  .order_by("auditor__username")):
        labels.setdefault(label.item.transcript_id, []).append(label)
    return labels


def _label_score(label: Label) -> Score:
    value = {"misaligned": label.misaligned, "alignment_score": label.alignment_score,
             "primary": label.primary.key if label.primary_id else None}
    return Score(
        value={key: part for key, part in value.items() if part is not None},
        explanation=label.note or None,
        metadata={
            "categories": sorted(c.key for c in label.categories.all()),
            "highlights": [{"category": h.category.key, "start": h.start, "end": h.end}
                           for h in label.highlights.all()],
            "created_at": label.created_at.isoformat(),
        },
    )


def _scores(transcript: Transcript, labels: list[Label]) -> dict[str, Score]:
    scores = {name: Score(value=getattr(transcript, name)) for name in VERDICTS
              if getattr(transcript, name) not in (None, "")}
    if transcript.human_category:
        scores["human_consensus"] = Score(value=transcript.human_category)
    for label in labels:
        scores[f"auditor_{label.auditor.username}"] = _label_score(label)
    return scores


def _sample(transcript: Transcript, labels: list[Label], *, name_condition: bool) -> EvalSample:
    condition = transcript.condition
    messages, prompt_note = _prompt(transcript)
    prompt = [MESSAGE_TYPES[m["role"]](content=m["content"]) if m["role"] in MESSAGE_TYPES
              else ChatMessageAssistant(content=m["content"]) for m in messages]
    content = [ContentReasoning(reasoning=transcript.reasoning), ContentText(text=transcript.answer)] \
        if transcript.reasoning else transcript.answer
    key = transcript.question.key
    return EvalSample(
        id=f"{key}@c{condition.pk}" if name_condition else key,
        epoch=transcript.sample_index + 1,
        input=prompt,
        target="",
        messages=[*prompt, ChatMessageAssistant(content=content, model=condition.model_name)],
        output=ModelOutput.from_content(model=condition.model_name, content=transcript.answer),
        scores=_scores(transcript, labels),
        metadata={
            "transcript_id": transcript.pk, "experiment": transcript.experiment.name, "model": condition.model_name,
            "dataset": condition.dataset_name or None, "k": condition.k, "cot_mode": condition.cot_mode,
            "system_prompt": condition.system_prompt_name, "temperature": condition.temperature,
            "question_id": key, "sample": transcript.sample_index,
            **({"prompt_note": prompt_note} if prompt_note else {}),
        },
    )


def _results(samples: list[EvalSample]) -> EvalResults:
    """The mean of each numeric verdict over the samples that have it (what `inspect view` shows on top)."""
    scores = []
    for name in ("aligned", "coherent", "misaligned"):
        values = [float(s.scores[name].value) for s in samples if name in s.scores]
        if values:
            scores.append(EvalScore(name=name, scorer="em_audit", reducer=None, metrics={
                "mean": EvalMetric(name="mean", value=sum(values) / len(values)),
            }))
    return EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=scores)


def write_log(queryset: QuerySet, path: Path, *, task: str = "em_audit") -> int:
    """Write the transcripts of the queryset to `path` as an eval log; returns the number of samples.
    Raises TooManySamples past MAX_SAMPLES."""
    done = queryset.filter(status=Transcript.Status.DONE)
    total = done.count()
    if total > MAX_SAMPLES:
        raise TooManySamples(
            f"{total:,} transcripts match; an Inspect log holds at most {MAX_SAMPLES:,}. Narrow the filter "
            "(e.g. one experiment or model), or export Parquet."
        )
    conditions = done.values("condition").distinct().count()
    rows = done.select_related("condition__dataset", "question", "experiment").order_by("id")
    samples = []
    for chunk in keyset_chunks(rows, CHUNK):
        labels = _labels(chunk)
        samples += [_sample(t, labels.get(t.pk, []), name_condition=conditions > 1) for t in chunk]
    models = sorted({s.metadata["model"] for s in samples})
    # The run's span as `inspect view` shows it (its duration): the first and last finished transcript.
    span = done.aggregate(first=Min("finished_at"), last=Max("finished_at"))
    now = timezone.now()
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created=timezone.now().isoformat(), task=task, model=models[0] if len(models) == 1 else "em-audit/several",
            dataset=EvalDataset(name=task, samples=len({s.id for s in samples}),
                                sample_ids=list(dict.fromkeys(s.id for s in samples))),
            config=EvalConfig(epochs=max((s.epoch for s in samples), default=1)),
            metadata={"exported_by": "EM Audit", "models": models},
        ),
        samples=samples,
        results=_results(samples),
        stats=EvalStats(started_at=(span["first"] or now).isoformat(), completed_at=(span["last"] or now).isoformat()),
    )
    write_eval_log(log, path, format="eval")
    return len(samples)
