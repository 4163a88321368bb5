"""The experiment page's progress stays true while a real worker generates: the bar and the conditions table
come from one source and refresh together (htmx), so they agree at every poll and reach the end without a
reload; the ETA is measured from recent finishes only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.builders import make_dataset, make_questions, make_spec
from tests.conftest import wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import aggregates
from transcripts.experiments.actions import launch
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.progress import progress as experiment_progress
from transcripts.models import Experiment, Transcript

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("processes")]


def test_the_bar_and_the_conditions_table_agree_at_every_poll_and_finish_together(
        page, live_server, celery_worker_factory):
    with StubOpenAI(lambda r, n: Reply(body=completion(f"reply {n}"), delay=0.4)) as stub:
        make_dataset(n=10)
        make_questions(n=5)
        experiment = define_experiment(
            make_spec(stub.base_url, k=[0, 2], samples=2, endpoint={"max_concurrency": 1}))  # 20 slots
        celery_worker_factory(concurrency=2)
        launch(experiment)
        page.goto(f"{live_server.url}{reverse('experiment-detail', args=[experiment.pk])}")

        seen = set()

        def agree_and_finished() -> bool:
            # One read of the partial: the bar's value and the table's done counts, from the same swap.
            bar, table = page.evaluate("""() => [document.querySelector('#progress progress').value,
                Array.from(document.querySelectorAll('#progress .condition-done'))
                     .map(td => parseInt(td.textContent)).reduce((a, b) => a + b, 0)]""")
            assert bar == table, f"bar {bar} but conditions {table}"
            seen.add(bar)
            return bar == 20
        wait_until(agree_and_finished, timeout=120, interval=0.5, message="the page to reach 20/20 without a reload")
    assert len(seen) > 2  # it moved while we watched, not only at the end
    assert re.search(r"20\s*/\s*20", page.locator("#progress").inner_text())


def test_the_eta_comes_from_recent_finishes_not_from_the_start_before_a_pause(db):
    """After a stop and a restart the start lies before a pause when nothing finished; the ETA must not
    count that pause (it once said 0:57:30 for three minutes of work)."""
    make_dataset(n=10)
    make_questions(n=5)
    experiment = define_experiment(make_spec(k=[0, 2], samples=2))  # 20 slots
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING,
                                                       started_at=now - timedelta(hours=2))
    experiment.refresh_from_db()
    # Resumed a minute ago: 10 slots finished since, one every 6 s.
    done = list(experiment.transcripts.order_by("pk")[:10])
    for i, slot in enumerate(done):
        Transcript.objects.filter(pk=slot.pk).update(status=Transcript.Status.DONE,
                                                     finished_at=now - timedelta(seconds=60 - 6 * i))
    aggregates.refresh_groups(aggregates.groups_of(experiment.transcripts.all()))
    progress = experiment_progress(experiment)
    assert 8 < progress["per_minute"] < 11  # 9 finishes in the ~54 s since the first, not 10 in 5 minutes
    assert timedelta(seconds=50) < progress["eta"] < timedelta(seconds=80)
