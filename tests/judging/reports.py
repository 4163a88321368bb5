"""Pages whose reports a worker computes (judging.reports), read by tests that start no worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.test import TestCase

from em_site.celery import app
from tests.conftest import set_celery_options


@contextmanager
def reports_computed_here() -> Iterator[list]:
    """Reports enqueued in the block are computed in this process when it ends, by the task's own code (Celery's
    eager mode: the task runs where it is sent, without broker or worker). Yields the tasks sent (callbacks)."""
    eager = app.conf.task_always_eager
    set_celery_options(task_always_eager=True)
    try:
        with TestCase.captureOnCommitCallbacks(execute=True) as sent:
            yield sent
    finally:
        set_celery_options(task_always_eager=eager)


def computed(client, url: str, data: dict | None = None, **extra):
    """The page once the reports it shows are computed: asked once (which enqueues what it lacks, computed here
    as a worker would), then asked again and returned."""
    with reports_computed_here():
        first = client.get(url, data, **extra)
    assert first.status_code == 200, first.status_code
    return client.get(url, data, **extra)
