"""Signals other apps listen to. `judging` depends on `transcripts`, never the reverse, so a finished
transcript announces itself here and judging (in its AppConfig.ready) queues the judge tasks."""

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

# Sent with `transcripts` (a list of Transcripts just marked done, the call engine's batch) after the
# transaction that finished them commits, by `announce_finished` only. Receivers must be idempotent: a slot is
# announced again when a receiver failed.
transcripts_finished = Signal()

# Sent by define_experiment (experiments/planning.py), inside its transaction, with `experiment` and `judge` (the judge
# endpoint version the definition chose, or None when no judge endpoint is loaded): judging makes that
# endpoint's rubric versions the experiment's.
experiment_defined = Signal()

# Sent by the cost estimate (experiments/estimate.py) with `judge` (an Endpoint): each receiver returns a list
# of JudgeRequest (same module), the judge requests every finished transcript gets, so the estimate counts them.
judge_requests_wanted = Signal()


def announce_finished(transcripts: list) -> None:
    """Send `transcripts_finished` for slots just marked done (after their transaction committed), and mark them
    announced once every receiver took them. When one failed (e.g. the database went away between the commit
    and the announcement), they stay unannounced and generation's reconcile announces them again: otherwise a
    restart at the wrong moment would leave finished transcripts that are never judged."""
    from .models import Transcript

    transcripts = sorted(transcripts, key=lambda transcript: transcript.pk)
    failed = False
    for receiver, result in transcripts_finished.send_robust(sender=Transcript, transcripts=transcripts):
        if isinstance(result, Exception):
            failed = True
            log.error("transcripts_finished receiver %r failed for %s (reconcile announces them again): %s",
                      receiver, [transcript.pk for transcript in transcripts], result)
    if not failed:
        Transcript.objects.filter(pk__in=[transcript.pk for transcript in transcripts], announced=False).update(
            announced=True
        )
