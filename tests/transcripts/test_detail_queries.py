"""The transcript page reads every queue's labels of the transcript at once: its queries do not grow with the
labels or queues, and it lists each label under its auditor."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from judging.models import AnnotationQueue, Label, PersonaCategory, QueueItem
from tests.conftest import make_user
from tests.transcripts.browse_data import build_corpus

pytestmark = pytest.mark.django_db


def test_labels_from_several_queues_cost_no_more_queries_than_one(alice_client, bob):
    corpus = build_corpus(bob)
    one, other = corpus.transcripts[-1], corpus.transcripts[-2]  # each labelled once by bob in queue "q"
    category = PersonaCategory.objects.get(key="dangerous_persona")
    for n, username in enumerate(("carol", "dave", "erin")):
        queue = AnnotationQueue.objects.create(name=f"more-{n}", taxonomy=category.taxonomy, overlap=1)
        item = QueueItem.objects.create(queue=queue, transcript=other, label_count=1)
        Label.objects.create(item=item, auditor=make_user(username, "auditor"), primary=category)
    counts = {}
    alice_client.get(reverse("transcript-detail", args=[one.pk]))  # the session's first page does more
    for transcript in (one, other):
        with CaptureQueriesContext(connection) as queries:
            html = alice_client.get(reverse("transcript-detail", args=[transcript.pk])).content.decode()
        counts[transcript.pk] = len(queries)
        shown = [name for name in ("bob", "carol", "dave", "erin") if f"{name}: Adopts a dangerous persona" in html]
        assert shown == (["bob"] if transcript == one else ["bob", "carol", "dave", "erin"])
    assert counts[one.pk] == counts[other.pk]
