"""Resolving a staged file's experiments, questions and conditions to rows: found, or created where an import
may create them; the first line (per kind) that names one that cannot be used fails the import."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count
from django.utils import timezone

from analysis.axes import AXIS_FIELDS
from transcripts.importing import ImportFailed
from transcripts.models import Condition, Experiment, Question, QuestionSet

from .staging import Key, Staging

IMPORTED_SET = "imported"


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
        self.sets: dict[str, QuestionSet] = {}

    def question_set(self, name: str, line: int) -> QuestionSet:
        if not name:
            if self.default_set is None:
                self.default_set, _ = QuestionSet.objects.get_or_create(
                    name=IMPORTED_SET, defaults={"description": "Questions of imported transcripts."}
                )
            return self.default_set
        if name not in self.sets:
            found = QuestionSet.objects.filter(name=name).first()
            if found is None:
                raise ImportFailed(self.file, f'no question set named "{name}"', line=line, field="question_set")
            self.sets[name] = found
        return self.sets[name]

    def get(self, set_name: str, question_id: str, key: Key) -> Question:
        question_set = self.question_set(set_name, key.line)
        question = Question.objects.filter(question_set=question_set, key=question_id).first()
        if question is not None:
            return question
        if question_set.name != IMPORTED_SET:
            raise ImportFailed(
                self.file,
                f'unknown question id "{question_id}" in question set "{question_set.name}"',
                line=key.line,
                field="question_id",
            )
        if not key.text.strip():
            raise ImportFailed(
                self.file, "missing: the text is needed for a question id seen for the first time",
                line=key.line, field="question",
            )
        return Question.objects.create(
            question_set=question_set,
            key=question_id,
            text=key.text,
            paraphrases=[key.text],
            domain="general",
            position=question_set.questions.count(),
        )


def _experiment(file: str, name: str, line: int, question_set: QuestionSet | None) -> Experiment:
    experiment, created = Experiment.objects.get_or_create(
        name=name,
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
            f'experiment "{name}" exists and was run here, not imported; use another experiment name',
            line=line,
            field="experiment",
        )
    return experiment


@dataclass
class Resolved:
    experiments: dict[str, Experiment]
    questions: dict[int, Question]  # staging number → question
    conditions: dict[int, Condition]  # staging number → condition
    stored: set[int]  # conditions that existed before this import (so may hold some of the file's slots)
    created: set[str]  # experiments this import created


def resolve(file: str, staging: Staging) -> Resolved:
    """Find or create the experiments, questions and conditions the file names; fail at the first line
    (per kind) that names one that cannot be used."""
    experiments: dict[str, Experiment] = {}
    resolvers: dict[str, _Questions] = {}
    created_experiments: set[str] = set()
    for name, line in staging.experiments.items():
        existing = Experiment.objects.filter(name=name).first()
        if existing is None:
            created_experiments.add(name)
        # A known experiment keeps its question set, so a re-import lands on the same slots.
        default_set = existing.question_set if existing else _auto_question_set(
            {question_id for experiment, set_name, question_id in staging.questions
             if experiment == name and not set_name}
        )
        resolvers[name] = _Questions(file, default_set)
        experiments[name] = _experiment(file, name, line, default_set)

    questions: dict[int, Question] = {}
    for (experiment_name, set_name, question_id), key in sorted(staging.questions.items(), key=lambda i: i[1].line):
        question = questions[key.number] = resolvers[experiment_name].get(set_name, question_id, key)
        experiment = experiments[experiment_name]
        if experiment.question_set_id is None:
            experiment.question_set = question.question_set
            experiment.save(update_fields=["question_set"])

    conditions: dict[int, Condition] = {}
    stored: set[int] = set()
    for (experiment_name, *axes), key in staging.conditions.items():
        conditions[key.number], created = Condition.objects.get_or_create(
            experiment=experiments[experiment_name], endpoint_name="", **dict(zip(AXIS_FIELDS, axes, strict=True)),
        )
        if not created:
            stored.add(key.number)
    return Resolved(experiments, questions, conditions, stored, created_experiments)
