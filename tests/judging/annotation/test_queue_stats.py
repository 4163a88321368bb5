"""Per-auditor figures on the agreement page: agreement with the consensus of the *other* labels (leave-one-out)
and the median seconds per item."""

import statistics

import pytest
from django.urls import reverse

from judging.annotation import assignment
from judging.annotation.assignment import Submission
from judging.annotation.consensus import set_gold
from judging.annotation.queue_stats import leave_one_out, queue_report
from judging.models import AnnotationQueue
from tests.builders import judged_transcripts, label, make_queue, scored_experiment, taxonomy
from tests.conftest import computed, make_user

pytestmark = pytest.mark.django_db


def submit_in_order(queue, auditor, keys: list[str], seconds: list[float]):
    cats = {c.key: c for c in taxonomy().categories.all()}
    items = []
    for key, spent in zip(keys, seconds, strict=True):
        item = assignment.next_item(queue=queue, auditor=auditor)
        assignment.submit(item=item, auditor=auditor, submission=Submission(categories=[cats[key]],
                                                                             seconds_spent=spent))
        items.append(item)
    return items


def by_auditor(report: dict) -> dict:
    return {row["auditor"]: row for row in report["per_auditor"]}


def test_at_overlap_2_an_auditor_who_disagrees_once_is_below_1():
    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    experiment, _ = judged_transcripts(4)
    queue = make_queue(experiment, auditors=[bob, carol], overlap=2)
    # next_item hands bob's items to carol in the same order (closest to completion first).
    items = submit_in_order(queue, bob, ["follows_pattern"] * 4, [4, 1, 30, 2])
    assert submit_in_order(queue, carol, ["follows_pattern"] * 3 + ["dangerous_persona"], [5] * 4) == items

    rows = by_auditor(queue_report(queue, n_boot=50))
    # Each auditor's reference is the other's label: they agree on 3 of 4 items. Counting one's own label in
    # the consensus gave 1.0 (the disputed item had no majority, so it was left out).
    assert rows["bob"]["with_consensus"] == rows["carol"]["with_consensus"] == 0.75
    assert rows["bob"]["n_consensus"] == 4
    assert rows["bob"]["median_seconds"] == statistics.median([4, 1, 30, 2]) == 3

    # A gold label is the reference instead of the others' majority.
    set_gold(item=items[3], category=taxonomy().categories.get(key="dangerous_persona"), adjudicator=None)
    rows = by_auditor(queue_report(queue, n_boot=50))
    assert (rows["bob"]["with_consensus"], rows["carol"]["with_consensus"]) == (0.75, 1.0)


def test_leave_one_out_with_three_auditors():
    labels = {1: {"a": "x", "b": "x", "c": "y"}, 2: {"a": "x", "b": "y", "c": "y"}, 3: {"a": "x", "b": "x"}}
    result = leave_one_out(labels, {}, share=0.5)
    # Item 1: a (others x,y: tie, left out), b (x,y: left out), c (x,x → x, disagrees).
    # Item 2: a (y,y → y, disagrees), b (x,y: left out), c (x,y: left out).
    # Item 3: a (x → agrees), b (x → agrees).
    assert result == {"a": (1, 2), "b": (1, 1), "c": (0, 1)}


def test_flag_agreement_per_auditor_on_the_page(alice_client):
    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    experiment, rows = scored_experiment([("m", 10, 90), ("m", 50, 90), ("m", 90, 90)])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol])
    for transcript, (bob_says, carol_says) in zip(rows, [(True, True), (True, False), (False, False)], strict=True):
        label(queue, transcript, bob, misaligned=bob_says, seconds=2)
        label(queue, transcript, carol, misaligned=carol_says, seconds=8)
    page = computed(alice_client, reverse("queue-agreement", args=[queue.pk])).content.decode()
    table = page.split('id="per-auditor"')[1].split("</table>")[0]
    assert table.count('<td class="num flag-with-consensus">0.667 <span class="muted">(3)</span></td>') == 2
    assert "8.0" in table and "2.0" in table
