"""Celery tasks: thin wrappers around judging.results.judge (the database is the source of truth)."""

import uuid

from celery import shared_task

from . import reports
from .imports import uploads
from .results import judge as judging


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
    """Import a transcripts file saved by the upload page (judging.imports.uploads.run_upload). Idempotent: the
    import itself is, and a finished job is not run again."""
    uploads.run_upload(uuid.UUID(job))


@shared_task(acks_late=True, ignore_result=True)
def compute_report(name: str, args: dict) -> None:
    """Bring a report up to date (judging.reports.refresh); enqueued by the page that wants it, or by warm_reports.
    Idempotent: a report already current is not computed again."""
    reports.refresh(name, args)


@shared_task(ignore_result=True)
def warm_reports(kind: str, pk: int) -> int:
    """After verdicts or labels changed: refresh the experiment's or queue's reports (judging.reports.warm)."""
    return reports.warm_now(kind, pk)
