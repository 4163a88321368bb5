"""Attack on serving order: a queue that fills one transcript at a time, in generation order (grouped by
condition, as an auto-filled queue or the demo queue fills), must not hand an auditor the conditions in that
order. See judging.annotation.assignment (blinding) and docs/security.md."""

from math import comb

import pytest
from django.urls import reverse

from judging.annotation.assignment import add_items
from judging.models import QueueItem
from tests.builders import judged_transcripts, make_queue
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db

CONDITIONS = 3
PER_CONDITION = 20
# The statistic: how many of the first PER_CONDITION items served belong to one condition, for each condition.
# The test fails when any condition has at least this many of them.
THRESHOLD = 16


def false_failure_probability() -> float:
    """P(some condition has ≥ THRESHOLD of the first PER_CONDITION items) when serving order is independent of
    the condition: then those items are a uniformly random PER_CONDITION of the CONDITIONS × PER_CONDITION, so one
    condition's count is hypergeometric; the union bound over the conditions bounds the probability."""
    total = CONDITIONS * PER_CONDITION
    one = sum(comb(PER_CONDITION, x) * comb(total - PER_CONDITION, PER_CONDITION - x)
              for x in range(THRESHOLD, PER_CONDITION + 1)) / comb(total, PER_CONDITION)
    return CONDITIONS * one


def test_an_auditor_served_a_queue_filled_one_transcript_at_a_time_cannot_read_the_condition_off_the_order(
    bob, bob_client
):
    """3 conditions × 20 transcripts enter the queue one at a time, condition after condition; the auditor then
    claims and labels all 60 over HTTP. Statistic: the number of items of each condition among the first 20
    served. Independent serving makes it hypergeometric (N=60, K=20, n=20, mean 6.7); the test fails if any
    condition has ≥ 16 of them, which happens by chance with probability ≤ 3 × P(X ≥ 16) = 3.3e-7 (computed by
    false_failure_probability). Serving by arrival (the old order: positions 0–19 are the first condition)
    gives the first condition all 20."""
    assert false_failure_probability() < 1e-6
    queue = make_queue(auditors=[bob], name="filling", overlap=1)
    condition_of = {}
    for c in range(CONDITIONS):
        _, rows = judged_transcripts(PER_CONDITION, name=f"condition-{c}")
        for transcript in rows:  # as transcripts_finished announces them: one at a time
            add_items(queue=queue, transcripts=Transcript.objects.filter(pk=transcript.pk))
            condition_of[transcript.pk] = c

    served = []
    for _ in range(CONDITIONS * PER_CONDITION):
        response = bob_client.post(reverse("annotate-next", args=[queue.pk]))
        assert response.status_code == 302
        url = response["Location"]
        item = QueueItem.objects.get(token=url.rstrip("/").split("/")[-1])
        served.append(condition_of[item.transcript_id])
        assert bob_client.post(url, {"categories": ["follows_pattern"]}).status_code == 302
    assert sorted(served) == sorted(condition_of.values())  # every item served once

    first = served[:PER_CONDITION]
    counts = [first.count(c) for c in range(CONDITIONS)]
    assert max(counts) < THRESHOLD, f"the first {PER_CONDITION} items served, by condition: {counts}"
