"""Celery tasks: thin wrappers (the database is the source of truth)."""

from celery import shared_task

from . import clustering, embedding


@shared_task(acks_late=True, ignore_result=True)
def embed(endpoint_id: int) -> int:
    """Work through an endpoint's pending vectors. Idempotent: a duplicate message finds nothing to claim."""
    return embedding.work(endpoint_id)


@shared_task(ignore_result=True)
def reconcile() -> dict:
    """Return expired embedding leases and re-dispatch lost work (scheduled by beat beside generation's)."""
    return embedding.reconcile()


@shared_task(acks_late=True, ignore_result=True)
def cluster(run_id: int) -> None:
    """Compute a cluster run. Idempotent: a finished run is not computed again."""
    clustering.compute(run_id)
