"""Queues that fill from their experiment as transcripts finish: only that experiment's chain-of-thought
transcripts, each once, handed to `overlap` auditors like any other item."""

from functools import partial

import pytest
from django.utils import timezone

from judging.annotation import assignment, autofill
from judging.models import AnnotationQueue, QueueItem
from tests.builders import make_condition, make_experiment, make_questions, make_queue, make_transcript
from tests.conftest import in_threads, make_user
from transcripts.models import Experiment, Transcript
from transcripts.signals import transcripts_finished


def define(name: str = "exp", cot=("off", "tags"), questions: int = 3) -> Experiment:
    """An experiment with one condition per CoT mode and one pending slot per question under each."""
    made = make_questions(n=questions, name=f"qs-{name}")
    experiment = make_experiment(name, questions=made, status=Experiment.Status.RUNNING)
    for mode in cot:
        condition = make_condition(experiment, k=8, cot_mode=mode)
        for question in made:
            make_transcript(condition, question, status=Transcript.Status.PENDING)
    return experiment


@pytest.fixture
def experiment(db):
    return define()


def auto_queue(experiment, *, auditors=(), overlap: int = 2, name: str = "auto") -> AnnotationQueue:
    return make_queue(auditors=auditors, name=name, overlap=overlap, auto_fill_experiment=experiment)


def finish(transcript: Transcript) -> Transcript:
    """What generation does for a slot: mark it done, then announce it (after the commit)."""
    Transcript.objects.filter(pk=transcript.pk).update(
        status=Transcript.Status.DONE, reasoning=f"Thinking about slot {transcript.pk}.", answer="An answer.",
        finished_at=timezone.now(),
    )
    transcript.refresh_from_db()
    transcripts_finished.send(sender=Transcript, transcripts=[transcript])
    return transcript


def slots(experiment, cot: str) -> list[Transcript]:
    return list(experiment.transcripts.filter(condition__cot_mode=cot).order_by("pk"))


def queued(queue) -> list[int]:
    return list(queue.items.order_by("position").values_list("transcript_id", flat=True))


def test_it_adds_each_finished_chain_of_thought_transcript_as_it_arrives(experiment):
    queue = auto_queue(experiment)
    first, second, _ = slots(experiment, "tags")
    finish(first)
    assert queued(queue) == [first.pk]
    finish(second)
    assert queued(queue) == [first.pk, second.pk]  # appended after what auditors may already be labelling


def test_it_takes_no_transcript_without_reasoning_mode_or_of_another_experiment(experiment):
    queue = auto_queue(experiment)
    other = define(name="other")
    for transcript in slots(experiment, "off") + slots(other, "tags"):
        finish(transcript)
    assert queued(queue) == []
    # A queue without auto-fill ignores everything.
    plain = make_queue(name="plain")
    finish(slots(experiment, "tags")[0])
    assert queued(plain) == [] and len(queued(queue)) == 1


def test_the_same_announcement_twice_adds_one_item(experiment):
    queue = auto_queue(experiment)
    transcript = finish(slots(experiment, "tags")[0])
    transcripts_finished.send(sender=Transcript, transcripts=[transcript])
    assert queued(queue) == [transcript.pk]


def test_fill_takes_what_finished_before_the_queue_existed_and_only_once(experiment):
    done_early = [finish(t) for t in slots(experiment, "tags")[:2] + slots(experiment, "off")[:1]]
    queue = auto_queue(experiment)
    assert autofill.fill(queue) == 2
    assert autofill.fill(queue) == 0
    assert sorted(queued(queue)) == sorted(t.pk for t in done_early[:2])
    assert sorted(queue.items.values_list("position", flat=True)) == [0, 1]


def test_an_auto_filled_item_goes_to_overlap_auditors_and_no_more(experiment):
    auditors = [make_user(name, "auditor") for name in ("ann", "ben", "cid")]
    queue = auto_queue(experiment, auditors=auditors, overlap=2)
    finish(slots(experiment, "tags")[0])
    item = queue.items.get()
    assert assignment.next_item(queue=queue, auditor=auditors[0]) == item
    assert assignment.next_item(queue=queue, auditor=auditors[1]) == item
    assert assignment.next_item(queue=queue, auditor=auditors[2]) is None
    # The next transcript to finish is there for the third auditor at once.
    finish(slots(experiment, "tags")[1])
    assert assignment.next_item(queue=queue, auditor=auditors[2]).transcript == slots(experiment, "tags")[1]


@pytest.mark.django_db(transaction=True)
def test_transcripts_finishing_at_once_in_several_threads_are_all_added_in_distinct_places():
    experiment = define(cot=["tags"], questions=12)
    queue = auto_queue(experiment)
    transcripts = list(experiment.transcripts.all())
    in_threads(*(partial(finish, transcript) for transcript in transcripts), together=True)
    positions = list(QueueItem.objects.filter(queue=queue).values_list("position", flat=True))
    assert sorted(queued(queue)) == sorted(t.pk for t in transcripts)
    assert sorted(positions) == list(range(len(transcripts)))
