"""Celery tasks: thin wrappers around transcripts.generation (the DB is the source of truth)."""

from celery import shared_task

from . import generation


@shared_task(name=generation.GENERATE_TASK, acks_late=True, ignore_result=True)
def generate(endpoint_id: int) -> int:
    """Work through an endpoint's pending slots in dispatch order (see generation.work). Idempotent: a
    duplicate or stale message finds nothing to claim and exits."""
    return generation.work(endpoint_id)


@shared_task(ignore_result=True)
def reconcile() -> dict:
    """Scheduled by beat (CELERY_BEAT_SCHEDULE) and called by `run_experiment --wait`."""
    return generation.reconcile()
