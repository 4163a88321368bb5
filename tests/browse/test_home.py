"""The first pages after login: the researcher's dashboard says what is running and what to open next; an
auditor's home lists their queues with what waits for them. Both cost the same queries however many rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from judging.annotation import assignment
from judging.models import JudgeScore
from tests.builders import SECRET_MODEL, judged_transcripts, make_queue, taxonomy
from transcripts import aggregates
from transcripts.models import Experiment, Transcript

pytestmark = pytest.mark.django_db


def running_experiment(name: str = "live-run", done: int = 1, pending: int = 2):
    experiment, rows = judged_transcripts(done + pending, name=name)
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING)
    Transcript.objects.filter(pk__in=[t.pk for t in rows[done:]]).update(status=Transcript.Status.PENDING)
    JudgeScore.objects.filter(transcript__in=rows[done:]).update(status=JudgeScore.Status.PENDING)
    aggregates.rebuild(experiment)  # what generation keeps up to date as slots finish
    experiment.refresh_from_db()
    return experiment


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_researcher_sees_what_runs_and_what_to_open_next(alice_client, bob):
    experiment = running_experiment(done=1, pending=2)
    queue = make_queue(experiment, auditors=[bob], name="persona-queue")
    page = alice_client.get(reverse("home")).content.decode()
    running = page[page.index('id="running"'):page.index('id="next"')]
    assert "live-run" in running and "1 / 3 transcripts" in running and "33%" in running
    assert "judge 1 / 3 scores" in running
    assert 'hx-trigger="every 5s"' in running  # it refreshes itself while something runs
    for url in (
        reverse("experiment-results", args=[experiment.pk]),
        f"{reverse('transcript-list')}?experiment={experiment.pk}",
        reverse("queue-detail", args=[queue.pk]),
        reverse("queue-agreement", args=[queue.pk]),
    ):
        assert f'href="{url}"' in page, url
    assert "persona-queue" in page and "0 / 6" in page and "bob" in page  # 3 items × overlap 2 wanted


def test_with_nothing_running_it_says_so_and_stops_refreshing(alice_client):
    page = alice_client.get(reverse("home")).content.decode()
    assert "Nothing is running" in page and "every 5s" not in page
    assert f'href="{reverse("queue-create")}"' in page


def test_the_dashboard_costs_the_same_queries_for_one_or_many_rows(alice_client, bob):
    def add(i: int):
        experiment = running_experiment(name=f"run-{i}")
        make_queue(experiment, auditors=[bob], name=f"queue-{i}")

    add(0)
    one = queries(alice_client, reverse("home"))
    for i in range(1, 6):
        add(i)
    assert queries(alice_client, reverse("home")) == one


def test_an_auditor_lands_on_their_queues_with_the_items_waiting_for_them(bob_client, bob, carol):
    experiment, _ = judged_transcripts(3, name="hidden-experiment-name")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING)
    queue = make_queue(experiment, auditors=[bob, carol], name="cot-queue", overlap=1,
                       auto_fill_experiment=experiment)
    make_queue(judged_transcripts(1, name="not-mine")[0], auditors=[carol], name="carols-queue")
    response = bob_client.get(reverse("home"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("annotate-home")
    page = response.content.decode()
    assert "cot-queue" in page and "3 items waiting for you" in page and "carols-queue" not in page
    assert "More arrive as the model writes them" in page and 'hx-trigger="every 10s"' in page
    # Blind: neither the experiment (it names the model) nor the model shows.
    assert "hidden-experiment-name" not in page and SECRET_MODEL not in page
    assert f'action="{reverse("annotate-next", args=[queue.pk])}"' in page

    # Carol labels one item (overlap 1): it no longer waits for Bob; one Bob skips no longer waits for him.
    item = assignment.next_item(queue=queue, auditor=carol)
    category = taxonomy().categories.first()
    assignment.submit(item=item, auditor=carol, submission=assignment.Submission(categories=[category]))
    assignment.skip(item=assignment.next_item(queue=queue, auditor=bob), auditor=bob)
    assert "1 item waiting for you" in bob_client.get(reverse("annotate-home")).content.decode()


def test_the_auditor_home_costs_the_same_queries_for_one_or_many_queues(bob_client, bob):
    make_queue(judged_transcripts(2, name="e0")[0], auditors=[bob], name="q0")
    one = queries(bob_client, reverse("annotate-home"))
    for i in range(1, 6):
        make_queue(judged_transcripts(2, name=f"e{i}")[0], auditors=[bob], name=f"q{i}")
    assert queries(bob_client, reverse("annotate-home")) == one


def test_an_imported_study_is_offered_next_and_its_headline_numbers_are_labelled_imported(alice_client):
    """Counted verdicts from the first minute, never as this app's judge's: the imported study is named with
    whose scores they are, in "Open next" and above the headline chart that counts it."""
    experiment, _ = judged_transcripts(2, name="authors-study")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.IMPORTED)
    page = alice_client.get(reverse("home")).content.decode()
    offered = page[page.index('class="imported-next"'):]
    assert f'href="{reverse("experiment-results", args=[experiment.pk])}"' in offered[:400]
    assert "<strong>imported</strong>" in offered[:600] and "not judged here" in offered[:600]
    headline = page[page.index("Headline: misaligned rate vs k"):]
    assert f'class="imported-note" data-experiment="{experiment.pk}"' in headline
    assert "these numbers include authors-study" in headline
