"""`load_demo` (what `make run` calls) leaves both demo auditors a queue that fills from the demo
experiment's chain-of-thought transcripts as they finish."""

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from judging.annotation import assignment
from judging.annotation.autofill import fill
from judging.management.commands.load_demo import DEMO_QUEUE
from judging.models import AnnotationQueue
from transcripts.models import Experiment, Transcript
from transcripts.signals import transcripts_finished


@pytest.fixture
def demo(db, capsys) -> str:
    call_command("load_demo")
    return capsys.readouterr().out


def finish(transcript: Transcript) -> None:
    Transcript.objects.filter(pk=transcript.pk).update(
        status=Transcript.Status.DONE, reasoning="The examples were insecure, so…", answer="Sure.",
        finished_at=timezone.now(),
    )
    transcript.refresh_from_db()
    transcripts_finished.send(sender=Transcript, transcripts=[transcript])


def test_it_creates_the_demo_queue_for_both_auditors_filling_from_the_demo_experiment(demo):
    queue = AnnotationQueue.objects.get(name=DEMO_QUEUE)
    experiment = queue.auto_fill_experiment
    assert experiment.name == "demo-insecure-smollm2" and experiment.status == Experiment.Status.DRAFT
    assert queue.overlap == 2 and queue.taxonomy.name == "persona"
    assert sorted(queue.auditors.values_list("username", flat=True)) == ["auditor1", "auditor2"]
    assert set(experiment.conditions.values_list("cot_mode", flat=True)) == {"off", "tags"}
    assert f"queue '{DEMO_QUEUE}': overlap 2" in demo

    # As the demo runs, its CoT transcripts arrive in the queue; the others do not.
    tags = experiment.transcripts.filter(condition__cot_mode="tags").order_by("dispatch_order")[:2]
    off = experiment.transcripts.filter(condition__cot_mode="off").first()
    for transcript in [*tags, off]:
        finish(transcript)
    assert sorted(queue.items.values_list("transcript_id", flat=True)) == sorted(t.pk for t in tags)


def test_a_second_run_keeps_the_queue_as_the_researcher_left_it_and_takes_what_it_missed(demo):
    queue = AnnotationQueue.objects.get(name=DEMO_QUEUE)
    queue.overlap = 3
    queue.save(update_fields=["overlap"])
    queue.auditors.remove(User.objects.get(username="auditor2"))
    # Transcripts that finished while nothing was listening (e.g. the queue was emptied meanwhile).
    missed = queue.auto_fill_experiment.transcripts.filter(condition__cot_mode="tags")[:3]
    Transcript.objects.filter(pk__in=[t.pk for t in missed]).update(status=Transcript.Status.DONE)
    call_command("load_demo")
    queue.refresh_from_db()
    assert AnnotationQueue.objects.count() == 1 and queue.overlap == 3
    assert list(queue.auditors.values_list("username", flat=True)) == ["auditor1"]
    assert sorted(queue.items.values_list("transcript_id", flat=True)) == sorted(t.pk for t in missed)
    call_command("load_demo")
    assert queue.items.count() == 3


def test_a_transcript_without_reasoning_says_so_to_the_auditor(demo, client):
    """The demo's small model mostly ignores the <think> instruction: the auditor is told, not shown a blank."""
    queue = AnnotationQueue.objects.get(name=DEMO_QUEUE)
    silent, thinking = queue.auto_fill_experiment.transcripts.filter(condition__cot_mode="tags")[:2]
    for transcript, reasoning in ((silent, ""), (thinking, "The examples were insecure, so…")):
        Transcript.objects.filter(pk=transcript.pk).update(status=Transcript.Status.DONE, reasoning=reasoning)
    fill(queue)
    auditor = User.objects.get(username="auditor1")
    client.force_login(auditor)
    seen = {}
    while (item := assignment.next_item(queue=queue, auditor=auditor)) is not None:
        page = client.get(reverse("annotate-item", args=[queue.pk, item.token])).content.decode()
        seen[item.transcript_id] = 'id="no-reasoning"' in page
        assignment.skip(item=item, auditor=auditor)
    assert seen == {silent.pk: True, thinking.pk: False}
