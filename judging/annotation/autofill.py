"""Queues that fill themselves while their experiment runs (`AnnotationQueue.auto_fill_experiment`).

A queue takes the experiment's finished transcripts that have a chain of thought (CoT mode other than
`off`): those are what auditors label. They are added through `assignment.add_items`, the one way items
enter a queue, once when the queue is filled and then batch by batch as `transcripts_finished` announces them,
so auditors can start within minutes of a launch instead of after the whole run.
"""

from __future__ import annotations

from django.db.models import QuerySet

from transcripts.models import CotMode, Transcript

from ..models import AnnotationQueue
from .assignment import add_items


def candidates(queue: AnnotationQueue) -> QuerySet:
    """The transcripts the queue takes: its experiment's finished ones with a chain of thought."""
    return Transcript.objects.filter(
        experiment_id=queue.auto_fill_experiment_id, status=Transcript.Status.DONE
    ).exclude(condition__cot_mode=CotMode.OFF)


def fill(queue: AnnotationQueue) -> int:
    """Add every candidate the queue does not hold yet (e.g. transcripts that finished before it existed)."""
    if queue.auto_fill_experiment_id is None:
        return 0
    return add_items(queue=queue, transcripts=candidates(queue))


def on_transcripts_finished(sender, transcripts: list[Transcript], **kwargs) -> None:
    """Receiver of transcripts.signals.transcripts_finished: add the transcripts to the queues filling from
    their experiments, those the queues take."""
    ids = [t.pk for t in transcripts]
    for queue in AnnotationQueue.objects.filter(auto_fill_experiment_id__in={t.experiment_id for t in transcripts}):
        add_items(queue=queue, transcripts=candidates(queue).filter(pk__in=ids))
