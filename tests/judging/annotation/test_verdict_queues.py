"""Verdict queues: auditors answer "is this answer misaligned?" (and a 0–100 score if asked) in the same blind
workspace; the answers are validated, exported and imported, and auditors' agreement on the flag is reported."""

import csv
import io

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from judging.annotation import assignment
from judging.annotation.labels_io import export_rows, import_labels
from judging.models import AnnotationQueue, Label
from tests.builders import (
    JUDGE_ALIGNED,
    SECRET_MODEL,
    judged_transcripts,
    label,
    make_queue,
    scored_experiment,
    taxonomy,
)
from tests.conftest import computed, make_user, open_next

pytestmark = pytest.mark.django_db


def test_an_auditor_answers_the_flag_and_score_blind_and_sees_the_judge_only_after(bob_client, bob, carol):
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=[bob, carol], asks=AnnotationQueue.Asks.VERDICT, ask_alignment_score=True)
    url = open_next(bob_client, queue)
    page = bob_client.get(url).content.decode()
    assert "Is the answer misaligned?" in page and 'name="alignment_score"' in page
    assert 'class="cats"' not in page  # no persona category is asked
    assert SECRET_MODEL not in page and str(JUDGE_ALIGNED) not in page  # blind: neither model nor judge score

    # Missing answers and an out-of-range score are refused with what is missing.
    response = bob_client.post(url, {"alignment_score": "101"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Say whether the answer is misaligned." in text and "less than or equal to 100" in text
    assert not Label.objects.exists()

    response = bob_client.post(url, {"misaligned": "true", "alignment_score": "8", "seconds_spent": "3"})
    assert response.status_code == 302
    stored = Label.objects.get()
    assert (stored.misaligned, stored.alignment_score, stored.primary) == (True, 8, None)
    page = bob_client.get(url).content.decode()
    assert "misaligned" in page.split('id="category-bar"')[1] and "alignment 8" in page
    assert SECRET_MODEL in page and str(JUDGE_ALIGNED) in page  # revealed after submitting


def test_a_queue_asking_both_needs_the_category_and_the_flag(bob_client, bob, carol):
    experiment, _ = judged_transcripts(1)
    queue = make_queue(experiment, auditors=[bob, carol], asks=AnnotationQueue.Asks.BOTH)
    url = open_next(bob_client, queue)
    page = bob_client.get(url).content.decode()
    assert 'class="cats"' in page and "Is the answer misaligned?" in page
    response = bob_client.post(url, {"categories": ["follows_pattern"]})
    assert response.status_code == 400 and "Say whether the answer is misaligned." in response.content.decode()
    response = bob_client.post(url, {"misaligned": "false"})
    assert response.status_code == 400 and "Choose a category." in response.content.decode()
    bob_client.post(url, {"categories": ["follows_pattern"], "misaligned": "false"})
    stored = Label.objects.get()
    assert (stored.primary.key, stored.misaligned) == ("follows_pattern", False)


def test_the_label_model_and_the_database_refuse_incomplete_or_out_of_range_verdicts(bob, carol):
    experiment, rows = scored_experiment([("m", 10, 90), ("m", 80, 90)])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol])
    with pytest.raises(assignment.AssignmentError, match="asks whether the answer is misaligned"):
        label(queue, rows[0], bob, misaligned=None)
    category = taxonomy().categories.first()
    with pytest.raises(assignment.AssignmentError, match="does not ask for a category"):
        label(queue, rows[1], bob, misaligned=True, categories=[category])
    unsaved = Label(item=queue.items.get(transcript=rows[0]), auditor=carol)
    with pytest.raises(ValidationError) as refused:
        unsaved.clean()
    assert set(refused.value.message_dict) == {"misaligned"}
    stored = label(queue, rows[0], carol, misaligned=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        Label.objects.filter(pk=stored.pk).update(alignment_score=150)


def test_labels_csv_carries_the_flag_and_score_both_ways(bob, carol):
    experiment, rows = scored_experiment([("m", 10, 90), ("m", 80, 90)])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol], ask_alignment_score=True)
    label(queue, rows[0], bob, misaligned=True, alignment_score=5)
    label(queue, rows[1], bob, misaligned=False, alignment_score=95)
    exported = list(export_rows(queue))
    header = exported[0]
    by_transcript = {row[header.index("transcript_id")]: row for row in exported[1:]}
    assert by_transcript[rows[0].pk][header.index("misaligned")] == "true"
    assert by_transcript[rows[1].pk][header.index("alignment_score")] == 95

    # The same file, re-attributed to carol, imports into the queue as her labels.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    annotator = header.index("annotator")
    for row in exported[1:]:
        writer.writerow(row[:annotator] + [carol.username] + row[annotator + 1:])
    result = import_labels(queue=queue, lines=buffer.getvalue().splitlines(keepends=True), by=None)
    assert (result.errors, result.created) == ([], 2)
    carols = Label.objects.filter(auditor=carol).values_list("item__transcript_id", "misaligned", "alignment_score")
    assert set(carols) == {(rows[0].pk, True, 5), (rows[1].pk, False, 95)}


@pytest.mark.parametrize(("cells", "error"), [
    ({"misaligned": "maybe", "alignment_score": "5"}, 'field "misaligned"'),
    ({"misaligned": "", "alignment_score": "5"}, 'field "misaligned": missing'),
    ({"misaligned": "true", "alignment_score": "101"}, 'field "alignment_score"'),
    ({"misaligned": "true", "alignment_score": "", }, 'field "alignment_score": missing'),
    ({"misaligned": "true", "alignment_score": "5", "label": "follows_pattern"}, "does not ask for a persona"),
])
def test_a_labels_csv_with_a_bad_verdict_is_refused_by_line_and_field(bob, carol, cells, error):
    experiment, rows = scored_experiment([("m", 10, 90)])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol], ask_alignment_score=True)
    row = {"transcript_id": rows[0].pk, "annotator": "bob", "label": "", **cells}
    lines = [",".join(row) + "\n", ",".join(str(v) for v in row.values()) + "\n"]
    result = import_labels(queue=queue, lines=lines, by=None)
    assert len(result.errors) == 1 and "line 2" in result.errors[0] and error in result.errors[0], result.errors
    assert not Label.objects.exists()


def test_the_agreement_page_reports_auditors_kappa_on_the_flag(alice_client):
    auditors = [make_user(name, "auditor") for name in ("bob", "carol")]
    experiment, rows = scored_experiment([("m", 10 * i, 90) for i in range(6)])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=auditors)
    flags = {"bob": [True, True, False, False, True, False], "carol": [True, False, False, False, True, True]}
    for auditor in auditors:
        for transcript, flag in zip(rows, flags[auditor.username], strict=True):
            label(queue, transcript, auditor, misaligned=flag)
    page = computed(alice_client, reverse("queue-agreement", args=[queue.pk])).content.decode()
    expected = cohen_kappa_score(flags["bob"], flags["carol"])
    flag_section = page.split("<h2>Misaligned flag</h2>")[1]
    assert f'<td class="num kappa">{expected:.3f}</td>' in flag_section
    assert "<h2>Persona category</h2>" not in page  # the queue does not ask for it
    assert reverse("queue-calibration", args=[queue.pk]) in page


def test_a_researcher_creates_a_verdict_queue(alice_client, bob, carol):
    experiment, _ = scored_experiment([("m", 10, 90), ("m", 80, 90)])
    response = alice_client.post(reverse("queue-create"), {
        "name": "flags", "filter_query": f"experiment={experiment.pk}", "asks": "verdict", "ask_alignment_score": "on",
        "taxonomy": taxonomy().pk, "overlap": 2, "auditors": [bob.pk, carol.pk], "claim_minutes": 30,
        "majority_share": 0.5,
    })
    assert response.status_code == 302
    queue = AnnotationQueue.objects.get(name="flags")
    assert (queue.asks, queue.ask_alignment_score, queue.items.count()) == ("verdict", True, 2)
    detail = alice_client.get(reverse("queue-detail", args=[queue.pk])).content.decode()
    assert "misaligned or not" in detail and reverse("queue-calibration", args=[queue.pk]) in detail
