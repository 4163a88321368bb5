"""What a researcher does to a defined experiment, from its page, the API or `run_experiment`: launch,
cancel, resume and retry the failed slots. Launching sends work messages through generation."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from ..engine import reset
from ..generation import dispatch
from ..models import Experiment, Transcript
from .status import cancel, mark_done_if_finished


def launch(experiment: Experiment) -> int:
    """Start (or restart) generation: mark the experiment running and send work messages.
    Returns how many messages were sent."""
    with transaction.atomic():
        Experiment.objects.filter(pk=experiment.pk).update(
            status=Experiment.Status.RUNNING, finished_at=None,
            started_at=experiment.started_at or timezone.now(),
        )
    experiment.refresh_from_db()
    if not experiment.transcripts.filter(status__in=[Transcript.Status.PENDING, Transcript.Status.RUNNING]).exists():
        mark_done_if_finished(experiment.pk)
        return 0
    return dispatch(experiment_ids=[experiment.pk])


def resume(experiment: Experiment) -> int:
    """Put cancelled slots back in line and launch."""
    experiment.transcripts.filter(status=Transcript.Status.CANCELLED).update(status=Transcript.Status.PENDING)
    return launch(experiment)


def retry_failed(experiment: Experiment) -> int:
    """Give terminally failed slots a fresh set of attempts, and launch."""
    reset(experiment.transcripts.filter(status=Transcript.Status.FAILED), fresh_attempts=True)
    return launch(experiment)


# What a researcher does to a defined experiment, from the page or the API alike. Each returns a count
# (messages sent or slots cancelled).
ACTIONS: dict[str, Callable[[Experiment], int]] = {
    "launch": launch, "cancel": cancel, "resume": resume, "retry-failed": retry_failed,
}
