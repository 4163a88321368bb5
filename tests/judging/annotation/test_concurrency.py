"""20 auditors hammer "next item" and submit on one queue at once, on PostgreSQL with real transactions."""

from functools import partial

import pytest

from judging.annotation import assignment
from judging.annotation.assignment import Submission
from judging.models import Label, QueueItem
from tests.builders import judged_transcripts, make_queue, taxonomy
from tests.conftest import in_threads, make_user

N_AUDITORS = 20
N_ITEMS = 30
OVERLAP = 3


@pytest.mark.django_db(transaction=True)
def test_every_item_gets_exactly_overlap_labels_and_no_label_is_lost():
    experiment, _ = judged_transcripts(N_ITEMS)
    auditors = [make_user(f"hammer{i}", "auditor") for i in range(N_AUDITORS)]
    queue = make_queue(experiment, auditors=auditors, overlap=OVERLAP)
    categories = list(taxonomy().categories.all())

    def auditor_loop(user) -> list[int]:
        """The labels this auditor submitted, until the queue has nothing left for them."""
        mine = []
        while (item := assignment.next_item(queue=queue, auditor=user)) is not None:
            # Asking again returns the same claim, as a double-clicked "next" would.
            assert assignment.next_item(queue=queue, auditor=user) == item
            label = assignment.submit(item=item, auditor=user, submission=Submission(
                categories=[categories[(item.pk + len(mine)) % len(categories)]], seconds_spent=1))
            mine.append(label.pk)
        return mine

    stored = in_threads(*(partial(auditor_loop, user) for user in auditors), together=True)

    # Every item has exactly N labels, both counted and stored; every label a thread saw submitted exists.
    counts = {item.pk: (item.label_count, item.labels.count()) for item in QueueItem.objects.filter(queue=queue)}
    assert set(counts.values()) == {(OVERLAP, OVERLAP)}
    submitted = [pk for pks in stored for pk in pks]
    assert len(submitted) == N_ITEMS * OVERLAP == Label.objects.filter(item__queue=queue).count()
    assert set(submitted) == set(Label.objects.filter(item__queue=queue).values_list("pk", flat=True))
