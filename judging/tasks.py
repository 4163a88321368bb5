"""Celery tasks: thin wrappers around judging.judge (the database is the source of truth)."""

import uuid

from celery import shared_task

from . import importing
from . import judge as judging


@shared_task(acks_late=True, ignore_result=True)
def judge(endpoint_id: int) -> int:
    """Work through an endpoint's pending judge rows. Idempotent: a duplicate message finds nothing to claim."""
    return judging.work(endpoint_id)


@shared_task(ignore_result=True)
def reconcile() -> dict:
    """Return expired judge leases and re-dispatch lost work (scheduled by beat next to generation's)."""
    return judging.reconcile()


@shared_task(acks_late=True, ignore_result=True)
def import_upload(job: str) -> None:
    """Import a transcripts file saved by the upload page (judging.importing.run_upload). Idempotent: the
    import itself is, and a finished job is not run again."""
    importing.run_upload(uuid.UUID(job))
