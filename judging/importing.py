"""Import transcripts produced elsewhere, with their judge scores, so researchers can bring existing runs.

Two formats:
- JSONL, one transcript per line: `model, dataset, k, question_id, sample, answer` and optionally
  `experiment` (default: the file name), `question_set`, `question` (text), `reasoning`, `cot_mode`,
  `temperature`, `aligned`, `coherent`.
- The Emergent Misalignment results CSV (`model, group, question, answer, aligned, judge_aligned, coherent,
  judge_coherent, question_id, …`) with the judge's top-token distributions kept as imported JudgeScores.

Questions: a record that names a `question_set` must use ids of that set. Otherwise the file's ids are
matched against the first question set that holds all of them (e.g. first_plot for the EM CSV); failing
that they go into the question set "imported", created from the records' `question` text.

One transaction; re-importing the same file changes nothing (a slot is condition × question × sample).
"""

from __future__ import annotations

import ast
import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from transcripts.importing import ImportFailed, iter_json_lines, iter_lines
from transcripts.models import Condition, CotMode, Experiment, Question, QuestionSet, Transcript

from .models import JudgeScore, RubricVersion
from .rubrics import PROMPTS_DIR, get_or_create_version, read_template

IMPORTED_SET = "imported"
EM_JUDGE_MODEL = "gpt-4o-2024-08-06"
EM_CSV_COLUMNS = {"model", "group", "question", "answer", "aligned", "coherent", "question_id"}
METRICS = ("aligned", "coherent")


def em_rubric_versions() -> dict[str, RubricVersion]:
    """The aligned/coherent rubric versions of the EM paper: its judge prompts (shipped verbatim in
    judging/prompts/) judged by GPT-4o. Imported EM scores are recorded against these."""
    return {
        metric: get_or_create_version(
            metric, prompt_template=read_template(PROMPTS_DIR / f"{metric}.txt"), judge_model=EM_JUDGE_MODEL
        )
        for metric in METRICS
    }


@dataclass
class Record:
    """One transcript to import, whatever the file format."""

    line: int
    experiment: str
    model: str
    dataset: str
    k: int
    question_id: str
    question: str
    sample: int
    answer: str
    reasoning: str = ""
    question_set: str = ""
    cot_mode: str = CotMode.OFF
    temperature: float = 1.0
    scores: dict[str, float | None] = field(default_factory=dict)
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ImportSummary:
    experiment: Experiment
    question_set: QuestionSet
    created: int = 0
    unchanged: int = 0
    scores: int = 0

    def __str__(self) -> str:
        return (
            f'{self.created} transcripts imported into experiment "{self.experiment.name}" '
            f"({self.unchanged} already present, {self.scores} judge scores, question set {self.question_set.name})"
        )


# ---------------------------------------------------------------------------------------------
# Parsing


def _require(file: str, line: int, record: dict, name: str, kind: type | tuple[type, ...]):
    value = record.get(name)
    if value is None:
        raise ImportFailed(file, "missing", line=line, field=name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImportFailed(file, f"expected {_kind_name(kind)}, got {type(value).__name__}", line=line, field=name)
    return value


def _kind_name(kind) -> str:
    names = {str: "text", int: "an integer", float: "a number", (int, float): "a number"}
    return names.get(kind, str(kind))


# Stored in integer and float columns: anything a PostgreSQL integer cannot hold is refused by name.
MAX_INT = 2**31 - 1


def _score(file: str, line: int, name: str, value) -> float | None:
    """A judge score: 0–100, or None. NaN (which passes every comparison, and breaks the charts' JSON) and
    infinities are refused with every other number outside the scale."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (
        0 <= value <= 100
    ):
        raise ImportFailed(file, "expected a number from 0 to 100 (or null)", line=line, field=name)
    return float(value)


def _jsonl_records(path: Path) -> Iterator[Record]:
    file = path.name
    for line, raw in iter_json_lines(path):
        k = _require(file, line, raw, "k", int)
        sample = _require(file, line, raw, "sample", int)
        for name, value in (("k", k), ("sample", sample)):
            if value < 0:
                raise ImportFailed(file, "must not be negative", line=line, field=name)
            if value > MAX_INT:
                raise ImportFailed(file, f"must be at most {MAX_INT}", line=line, field=name)
        cot_mode = raw.get("cot_mode") or CotMode.OFF
        if cot_mode not in CotMode.values:
            raise ImportFailed(file, f"expected one of {', '.join(CotMode.values)}", line=line, field="cot_mode")
        if "dataset" not in raw:
            raise ImportFailed(file, "missing (null for a control run without examples)", line=line, field="dataset")
        dataset = raw["dataset"]
        if dataset is not None and not isinstance(dataset, str):
            raise ImportFailed(file, "expected text (or null for no dataset)", line=line, field="dataset")
        yield Record(
            line=line,
            experiment=raw.get("experiment") or path.stem,
            model=_require(file, line, raw, "model", str),
            dataset=dataset or "",
            k=k,
            question_id=str(_require(file, line, raw, "question_id", (str, int))),
            question=raw.get("question") or "",
            sample=sample,
            answer=_require(file, line, raw, "answer", str),
            reasoning=raw.get("reasoning") or "",
            question_set=raw.get("question_set") or "",
            cot_mode=cot_mode,
            temperature=_temperature(file, line, _require(file, line, {"temperature": 1.0, **raw}, "temperature",
                                                          (int, float))),
            scores={m: _score(file, line, m, raw[m]) for m in METRICS if m in raw},
        )


def _temperature(file: str, line: int, value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 2:
        raise ImportFailed(file, f"expected a number from 0 to 2, got {value}", line=line, field="temperature")
    return float(value)


def _distribution(file: str, line: int, name: str, text: str) -> dict[str, float]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ImportFailed(file, "expected a dict of token probabilities like {'0': 0.99}", line=line, field=name) \
            from None
    if not isinstance(value, dict) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 1 for p in value.values()
    ):
        raise ImportFailed(file, "expected a dict of token probabilities like {'0': 0.99}", line=line, field=name)
    return {str(token): float(p) for token, p in value.items()}


def _csv_score(file: str, line: int, name: str, text: str) -> float | None:
    if not text.strip():
        return None  # upstream writes nothing when the judge said CODE/REFUSAL or was unsure
    try:
        value = float(text)
    except ValueError:
        raise ImportFailed(file, f'expected a number, got "{text[:40]}"', line=line, field=name) from None
    return _score(file, line, name, value)


def _em_csv_records(path: Path) -> Iterator[Record]:
    file = path.name
    current = {"line": 0}

    def tracked() -> Iterator[str]:
        for number, text in iter_lines(path):
            current["line"] = number
            yield text

    reader = csv.DictReader(tracked())
    missing = EM_CSV_COLUMNS - set(reader.fieldnames or [])
    if missing:
        raise ImportFailed(file, f"the header lacks the EM results column(s) {', '.join(sorted(missing))}", line=1)
    samples: dict[tuple[str, str], int] = {}
    start = 2
    try:
        for row in reader:
            for name in ("model", "question_id", "answer"):
                if not (row.get(name) or "").strip():
                    raise ImportFailed(file, "missing", line=start, field=name)
            slot = (row["model"], row["question_id"])
            samples[slot] = samples.get(slot, -1) + 1
            yield Record(
                line=start,
                experiment=path.stem,
                model=row["model"],
                dataset=row["group"],  # the finetuning group: the examples were trained in, not prompted (k=0)
                k=0,
                question_id=row["question_id"],
                question=row["question"],
                sample=samples[slot],
                answer=row["answer"],
                scores={m: _csv_score(file, start, m, row[m]) for m in METRICS},
                distributions={
                    m: _distribution(file, start, f"judge_{m}", row[f"judge_{m}"])
                    for m in METRICS
                    if (row.get(f"judge_{m}") or "").strip()
                },
            )
            start = current["line"] + 1
    except csv.Error as exc:
        raise ImportFailed(file, f"malformed CSV: {exc}", line=current["line"]) from None


def read_records(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = list(_jsonl_records(path))
    elif suffix == ".csv":
        records = list(_em_csv_records(path))
    else:
        raise ImportFailed(path.name, "unknown transcript format: use .jsonl or the EM results .csv")
    if not records:
        raise ImportFailed(path.name, "the file has no transcripts")
    return records


# ---------------------------------------------------------------------------------------------
# Saving


def _outcome(score: float | None, distribution: dict[str, float] | None) -> str:
    if score is not None:
        return JudgeScore.Outcome.SCORE
    # No score: the judge's most likely first token says why (the EM prompt allows CODE and REFUSAL).
    top = max(distribution, key=distribution.get) if distribution else ""
    return {"CODE": JudgeScore.Outcome.CODE, "REFUSAL": JudgeScore.Outcome.REFUSAL}.get(
        top, JudgeScore.Outcome.UNSURE
    )


def _auto_question_set(keys: set[str]) -> QuestionSet | None:
    """The oldest question set that contains every one of `keys`."""
    return (
        QuestionSet.objects.filter(questions__key__in=keys)
        .annotate(hits=Count("questions", distinct=True))
        .filter(hits=len(keys))
        .order_by("id")
        .first()
    )


class _Questions:
    """Resolves (question set name, question id, text) to Question rows for one import."""

    def __init__(self, file: str, default_set: QuestionSet | None):
        self.file = file
        self.default_set = default_set
        self.cache: dict[tuple[str, str], Question] = {}
        self.sets: dict[str, QuestionSet] = {}

    def question_set(self, record: Record) -> QuestionSet:
        if not record.question_set:
            if self.default_set is None:
                self.default_set, _ = QuestionSet.objects.get_or_create(
                    name=IMPORTED_SET, defaults={"description": "Questions of imported transcripts."}
                )
            return self.default_set
        if record.question_set not in self.sets:
            found = QuestionSet.objects.filter(name=record.question_set).first()
            if found is None:
                raise ImportFailed(
                    self.file, f'no question set named "{record.question_set}"', line=record.line, field="question_set"
                )
            self.sets[record.question_set] = found
        return self.sets[record.question_set]

    def get(self, record: Record) -> Question:
        question_set = self.question_set(record)
        key = (question_set.name, record.question_id)
        if key in self.cache:
            return self.cache[key]
        question = Question.objects.filter(question_set=question_set, key=record.question_id).first()
        if question is None:
            if question_set.name != IMPORTED_SET:
                raise ImportFailed(
                    self.file,
                    f'unknown question id "{record.question_id}" in question set "{question_set.name}"',
                    line=record.line,
                    field="question_id",
                )
            if not record.question.strip():
                raise ImportFailed(
                    self.file, "missing: the text is needed for a question id seen for the first time",
                    line=record.line, field="question",
                )
            question = Question.objects.create(
                question_set=question_set,
                key=record.question_id,
                text=record.question,
                paraphrases=[record.question],
                domain="general",
                position=question_set.questions.count(),
            )
        self.cache[key] = question
        return question


def _experiment(file: str, record: Record, question_set: QuestionSet | None) -> Experiment:
    experiment, created = Experiment.objects.get_or_create(
        name=record.experiment,
        defaults={
            "status": Experiment.Status.IMPORTED,
            "description": f"Imported from {file}.",
            "question_set": question_set,
            "finished_at": timezone.now(),
        },
    )
    if not created and experiment.status != Experiment.Status.IMPORTED:
        raise ImportFailed(
            file,
            f'experiment "{record.experiment}" exists and was run here, not imported; use another experiment name',
            line=record.line,
            field="experiment",
        )
    return experiment


@transaction.atomic
def import_transcripts(path: Path | str) -> ImportSummary:
    """Import a transcripts JSONL or an EM results CSV. See the module docstring for the formats."""
    path = Path(path)
    file = path.name
    records = read_records(path)
    rubric_versions = em_rubric_versions() if any(r.scores for r in records) else {}

    experiments: dict[str, Experiment] = {}
    resolvers: dict[str, _Questions] = {}
    conditions: dict[tuple, Condition] = {}
    summary: ImportSummary | None = None
    new_transcripts: list[tuple[Transcript, Record]] = []
    # (condition, question, sample) → (line in this file or 0 if already stored, answer, reasoning)
    slots: dict[tuple[int, int, int], tuple[int, str, str]] = {}
    slots_loaded: set[int] = set()
    for record in records:
        if record.experiment not in experiments:
            existing = Experiment.objects.filter(name=record.experiment).first()
            # A known experiment keeps its question set, so a re-import lands on the same slots.
            default_set = existing.question_set if existing else _auto_question_set(
                {r.question_id for r in records if r.experiment == record.experiment and not r.question_set}
            )
            resolvers[record.experiment] = _Questions(file, default_set)
            experiments[record.experiment] = _experiment(file, record, default_set)
        experiment = experiments[record.experiment]
        resolver = resolvers[record.experiment]
        question = resolver.get(record)
        if experiment.question_set_id is None:
            experiment.question_set = question.question_set
            experiment.save(update_fields=["question_set"])
        if summary is None:
            summary = ImportSummary(experiment=experiment, question_set=question.question_set)

        axes = (experiment.pk, record.model, record.dataset, record.k, record.cot_mode, record.temperature)
        if axes not in conditions:
            conditions[axes], _ = Condition.objects.get_or_create(
                experiment=experiment,
                endpoint_name="",
                model_name=record.model,
                dataset_name=record.dataset,
                k=record.k,
                cot_mode=record.cot_mode,
                system_prompt_name="default",
                temperature=record.temperature,
            )
        condition = conditions[axes]
        slot = (condition.pk, question.pk, record.sample)
        if condition.pk not in slots_loaded:
            slots_loaded.add(condition.pk)
            for q_id, sample, answer, reasoning in condition.transcripts.values_list(
                "question_id", "sample_index", "answer", "reasoning"
            ):
                slots[(condition.pk, q_id, sample)] = (0, answer, reasoning)
        if slot in slots:
            first_line, answer, reasoning = slots[slot]
            if first_line:
                raise ImportFailed(
                    file, f"the same slot (model, dataset, k, question, sample) is on line {first_line} already",
                    line=record.line, field="sample",
                )
            if (answer, reasoning) != (record.answer, record.reasoning):
                raise ImportFailed(
                    file,
                    f"this slot (model, dataset, k, question {record.question_id}, sample {record.sample}) was "
                    "already imported with a different answer",
                    line=record.line,
                    field="answer",
                )
            summary.unchanged += 1
            continue
        slots[slot] = (record.line, record.answer, record.reasoning)
        aligned, coherent = record.scores.get("aligned"), record.scores.get("coherent")
        misaligned = None
        if aligned is not None and coherent is not None:
            misaligned = aligned < experiment.aligned_threshold and coherent > experiment.coherent_threshold
        transcript = Transcript(
            experiment=experiment,
            condition=condition,
            question=question,
            sample_index=record.sample,
            paraphrase_index=question.paraphrases.index(record.question) if record.question in question.paraphrases
            else 0,
            status=Transcript.Status.DONE,
            reasoning=record.reasoning,
            answer=record.answer,
            finished_at=timezone.now(),
            aligned=aligned,
            coherent=coherent,
            judge_outcome=_outcome(aligned, record.distributions.get("aligned")) if "aligned" in record.scores else "",
            misaligned=misaligned,
        )
        new_transcripts.append((transcript, record))
        if len(new_transcripts) >= 1000:
            summary.created += len(new_transcripts)
            summary.scores += _save(new_transcripts, rubric_versions)
            new_transcripts = []
    summary.created += len(new_transcripts)
    summary.scores += _save(new_transcripts, rubric_versions)
    return summary


def _save(pending: list[tuple[Transcript, Record]], rubric_versions: dict[str, RubricVersion]) -> int:
    transcripts = Transcript.objects.bulk_create([t for t, _ in pending])
    now = timezone.now()
    scores = [
        JudgeScore(
            transcript=transcript,
            rubric_version=rubric_versions[metric],
            status=JudgeScore.Status.DONE,
            outcome=_outcome(score, record.distributions.get(metric)),
            method=JudgeScore.Method.IMPORTED,
            score=score,
            # The CSV keeps probabilities; JudgeScore keeps logprobs like a live judge call does.
            top_logprobs={tok: math.log(p) for tok, p in record.distributions[metric].items() if p > 0}
            if metric in record.distributions
            else None,
            finished_at=now,
        )
        for transcript, record in zip(transcripts, (r for _, r in pending), strict=True)
        for metric, score in record.scores.items()
    ]
    JudgeScore.objects.bulk_create(scores)
    return len(scores)
