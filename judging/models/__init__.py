"""Every verdict on a transcript, by a model or a person.

One module per concept; every model and public name is importable from `judging.models`."""

from .annotation import (
    Adjudication,
    AnnotationQueue,
    Assignment,
    Highlight,
    Label,
    LabelRevision,
    QueueItem,
    random_rank,
)
from .gold import GoldItem, GoldRun, GoldSuite
from .rubrics import ExperimentJudging, Rubric, RubricVersion
from .scores import JudgeScore
from .taxonomy import PersonaCategory, Taxonomy

__all__ = [
    "Adjudication",
    "AnnotationQueue",
    "Assignment",
    "ExperimentJudging",
    "GoldItem",
    "GoldRun",
    "GoldSuite",
    "Highlight",
    "JudgeScore",
    "Label",
    "LabelRevision",
    "PersonaCategory",
    "QueueItem",
    "Rubric",
    "RubricVersion",
    "Taxonomy",
    "random_rank",
]
