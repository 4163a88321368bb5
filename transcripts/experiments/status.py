"""An experiment's status changes that send no work: cancelling it, and marking it done once no slot is open.
The call engine cancels an experiment whose budget is reached and generation marks one done when its last
slot finishes, so this module sits below both; the actions that send work are in actions.py."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import Experiment, Transcript


def cancel(experiment: Experiment) -> int:
    """Stop handing out slots. Requests already in flight finish and are kept. Returns slots cancelled."""
    with transaction.atomic():
        Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.CANCELLED)
        return experiment.transcripts.filter(status=Transcript.Status.PENDING).update(
            status=Transcript.Status.CANCELLED
        )


def mark_done_if_finished(experiment_id: int) -> bool:
    """A running experiment with no pending or running slot left is done."""
    open_slots = Transcript.objects.filter(
        experiment_id=experiment_id, status__in=[Transcript.Status.PENDING, Transcript.Status.RUNNING]
    )
    if open_slots.exists():
        return False
    return bool(
        Experiment.objects.filter(pk=experiment_id, status=Experiment.Status.RUNNING).update(
            status=Experiment.Status.DONE, finished_at=timezone.now()
        )
    )
