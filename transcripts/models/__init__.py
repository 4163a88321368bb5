"""What was asked and answered: in-context datasets, questions, endpoints, experiments, transcripts.

One module per concept; every model and public name is importable from `transcripts.models`."""

from .batches import CallBatch
from .datasets import Dataset, Example, content_hash
from .endpoints import AccountPace, Endpoint, MissingApiKey, UndeclaredKeyVariable, undeclared_key_message
from .experiments import Condition, CotMode, Experiment, setting_of
from .questions import Question, QuestionSet
from .transcripts import LeasedWork, Transcript, TranscriptQuerySet
from .verdict_counts import CategoryCount, VerdictCount

__all__ = [
    "AccountPace",
    "CallBatch",
    "CategoryCount",
    "Condition",
    "CotMode",
    "Dataset",
    "Endpoint",
    "Example",
    "Experiment",
    "LeasedWork",
    "MissingApiKey",
    "Question",
    "QuestionSet",
    "Transcript",
    "TranscriptQuerySet",
    "UndeclaredKeyVariable",
    "VerdictCount",
    "content_hash",
    "setting_of",
    "undeclared_key_message",
]
