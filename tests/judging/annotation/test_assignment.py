"""Next item, claims, submit, skip, undo and consensus: the rules an auditor and a researcher notice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from judging.annotation import assignment
from judging.annotation.assignment import AssignmentError, Submission
from judging.annotation.consensus import majority, set_gold
from judging.annotation.labels_io import export_rows, import_labels
from judging.annotation.taxonomy import category_rows, create_version
from judging.models import Assignment, Label
from tests.builders import judged_transcripts, make_queue, taxonomy
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def cat(key: str):
    return taxonomy().categories.get(key=key)


def label(queue, user, key: str, **extra):
    item = assignment.next_item(queue=queue, auditor=user)
    assignment.submit(item=item, auditor=user, submission=Submission(categories=[cat(key)], **extra))
    return item


@pytest.fixture
def auditors(db):
    return [make_user(f"aud{i}", "auditor") for i in range(4)]


def test_it_prefers_items_closest_to_completion(auditors):
    experiment, _ = judged_transcripts(3)
    queue = make_queue(experiment, auditors=auditors, overlap=3)
    first = label(queue, auditors[0], "dangerous_persona")
    # The next auditor gets the item that already has a label, not a fresh one.
    assert assignment.next_item(queue=queue, auditor=auditors[1]) == first


def test_it_never_hands_out_more_than_overlap_claims(auditors):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors, overlap=2)
    a, b, c = (assignment.next_item(queue=queue, auditor=u) for u in auditors[:3])
    assert a == b and c != a
    # The fourth auditor gets the second item's remaining slot; then nothing is left.
    assert assignment.next_item(queue=queue, auditor=auditors[3]) == c
    assert assignment.next_item(queue=queue, auditor=make_user("late", "auditor")) is None


def test_it_returns_the_same_claim_until_it_is_submitted(auditors):
    experiment, _ = judged_transcripts(3)
    queue = make_queue(experiment, auditors=auditors)
    item = assignment.next_item(queue=queue, auditor=auditors[0])
    assert assignment.next_item(queue=queue, auditor=auditors[0]) == item


def test_an_abandoned_claim_expires_and_goes_to_someone_else(auditors):
    experiment, _ = judged_transcripts(1)
    queue = make_queue(experiment, auditors=auditors, overlap=1, claim_minutes=30)
    item = assignment.next_item(queue=queue, auditor=auditors[0])
    assert assignment.next_item(queue=queue, auditor=auditors[1]) is None
    later = timezone.now() + timedelta(minutes=31)
    assert assignment.next_item(queue=queue, auditor=auditors[1], now=later) == item
    # The first auditor comes back too late: their label is refused with a reason, not silently dropped.
    with pytest.raises(AssignmentError, match="expired"):
        assignment.submit(item=item, auditor=auditors[0], submission=Submission(categories=[cat("follows_pattern")]),
                          now=later)
    assignment.submit(item=item, auditor=auditors[1], submission=Submission(categories=[cat("follows_pattern")]),
                      now=later)
    item.refresh_from_db()
    assert item.label_count == 1


def test_submit_stores_the_label_with_highlights_and_writes_the_consensus(auditors):
    experiment, rows = judged_transcripts(1, reasoning="I will follow the pattern of the examples.")
    queue = make_queue(experiment, auditors=auditors, overlap=2)
    item = label(queue, auditors[0], "follows_pattern", note="clear", confidence=4, seconds_spent=12.5,
                 highlights=[(cat("follows_pattern"), 7, 25)])
    stored = Label.objects.get(item=item, auditor=auditors[0])
    assert (stored.primary.key, stored.note, stored.confidence, stored.seconds_spent) == (
        "follows_pattern", "clear", 4, 12.5)
    assert [(h.start, h.end) for h in stored.highlights.all()] == [(7, 25)]
    rows[0].refresh_from_db()
    assert rows[0].human_category == "follows_pattern"  # one label of one: a 100 % majority
    label(queue, auditors[1], "dangerous_persona")
    rows[0].refresh_from_db()
    assert rows[0].human_category == ""  # a tie has no consensus


def test_it_refuses_highlights_outside_the_reasoning(auditors):
    experiment, _ = judged_transcripts(1, reasoning="short")
    queue = make_queue(experiment, auditors=auditors)
    item = assignment.next_item(queue=queue, auditor=auditors[0])
    with pytest.raises(AssignmentError, match="outside"):
        assignment.submit(item=item, auditor=auditors[0], submission=Submission(
            categories=[cat("follows_pattern")], highlights=[(cat("follows_pattern"), 2, 50)]))
    assert not Label.objects.exists()


def test_it_refuses_a_label_without_a_claim_and_a_second_label(auditors):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors)
    item = label(queue, auditors[0], "follows_pattern")
    for user in (auditors[0], auditors[1]):  # already labelled / never claimed
        with pytest.raises(AssignmentError):
            assignment.submit(item=item, auditor=user, submission=Submission(categories=[cat("follows_pattern")]))
    assert Label.objects.count() == 1


def test_skip_is_not_offered_again_and_undo_brings_it_back(auditors):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors)
    first = assignment.next_item(queue=queue, auditor=auditors[0])
    assignment.skip(item=first, auditor=auditors[0])
    second = assignment.next_item(queue=queue, auditor=auditors[0])
    assert second != first
    assignment.skip(item=second, auditor=auditors[0])
    assert assignment.next_item(queue=queue, auditor=auditors[0]) is None
    assert assignment.undo_last(queue=queue, auditor=auditors[0]) == second
    assert assignment.next_item(queue=queue, auditor=auditors[0]) == second


def test_undo_removes_the_last_label_and_reopens_the_item_in_an_open_queue(auditors):
    experiment, rows = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors, blind=False)  # nothing is revealed by submitting
    item = label(queue, auditors[0], "notices_refuses")
    assert assignment.undo_last(queue=queue, auditor=auditors[0]) == item
    item.refresh_from_db()
    assert item.label_count == 0 and not Label.objects.exists()
    assert Assignment.objects.get(item=item, auditor=auditors[0]).status == Assignment.Status.CLAIMED
    item.transcript.refresh_from_db()
    assert item.transcript.human_category == ""
    with pytest.raises(AssignmentError, match="Nothing"):
        assignment.undo_last(queue=queue, auditor=auditors[1])


def test_in_a_blind_queue_a_label_is_final_but_a_later_skip_can_be_undone(auditors):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors)
    item = label(queue, auditors[0], "notices_refuses")
    with pytest.raises(AssignmentError, match="final"):
        assignment.undo_last(queue=queue, auditor=auditors[0])
    assert Label.objects.get().item == item
    second = assignment.next_item(queue=queue, auditor=auditors[0])
    assignment.skip(item=second, auditor=auditors[0])
    assert assignment.undo_last(queue=queue, auditor=auditors[0]) == second


def test_multiple_categories_only_where_allowed(auditors):
    experiment, _ = judged_transcripts(1)
    queue = make_queue(experiment, auditors=auditors)
    item = assignment.next_item(queue=queue, auditor=auditors[0])
    both = [cat("reframes_helpful"), cat("notices_complies")]
    with pytest.raises(AssignmentError, match="one category"):
        assignment.submit(item=item, auditor=auditors[0], submission=Submission(categories=both))
    queue.allow_multiple = True
    queue.save()
    stored = assignment.submit(item=item, auditor=auditors[0], submission=Submission(categories=both))
    assert stored.primary.key == "reframes_helpful" and stored.categories.count() == 2


def test_majority_needs_more_than_the_configured_share():
    assert majority(["a", "a", "b"], share=0.5) == "a"
    assert majority(["a", "a", "b"], share=0.7) == ""
    assert majority(["a", "b"], share=0.5) == ""
    assert majority([], share=0.5) == ""


def test_gold_overrides_the_majority_and_clearing_it_restores_it(auditors):
    experiment, rows = judged_transcripts(1)
    queue = make_queue(experiment, auditors=auditors, overlap=3)
    for user in auditors[:2]:
        item = label(queue, user, "dangerous_persona")
    label(queue, auditors[2], "reframes_helpful")
    rows[0].refresh_from_db()
    assert rows[0].human_category == "dangerous_persona"
    assert set_gold(item=item, category=cat("reframes_helpful"), adjudicator=auditors[3]) == "reframes_helpful"
    rows[0].refresh_from_db()
    assert rows[0].human_category == "reframes_helpful"
    set_gold(item=item, category=None, adjudicator=auditors[3])
    rows[0].refresh_from_db()
    assert rows[0].human_category == "dangerous_persona"


def test_labels_survive_a_csv_export_and_import(auditors):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors, name="source")
    label(queue, auditors[0], "follows_pattern", note="a, \"quoted\" note")
    label(queue, auditors[1], "follows_pattern")
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows(export_rows(queue))
    target = make_queue(experiment, auditors=auditors, name="target")
    refused = import_labels(queue=target, lines=io.StringIO(buffer.getvalue() + "999,aud0,follows_pattern\n"), by=None)
    assert (refused.created, refused.updated) == (0, 0)
    assert len(refused.errors) == 1 and "line 4" in refused.errors[0]
    assert not Label.objects.filter(item__queue=target).exists()
    result = import_labels(queue=target, lines=io.StringIO(buffer.getvalue()), by=None)
    assert (result.created, result.updated, result.errors) == (2, 0, [])
    imported = Label.objects.filter(item__queue=target).order_by("auditor__username")
    assert [(lab.auditor.username, lab.primary.key) for lab in imported] == [
        ("aud0", "follows_pattern"), ("aud1", "follows_pattern")]
    assert imported[0].note == "a, \"quoted\" note"
    assert sum(target.items.values_list("label_count", flat=True)) == 2


def test_editing_a_taxonomy_creates_a_new_version():
    base = taxonomy()
    rows = category_rows(base)
    rows[0]["name"] = "Adopts an evil persona"
    new = create_version(base=base, categories=rows[:3], description="trimmed")
    assert (new.name, new.version) == ("persona", 2)
    assert list(new.categories.values_list("name", flat=True))[0] == "Adopts an evil persona"
    assert base.categories.count() == 6 and base.categories.first().name == "Adopts a dangerous persona"
