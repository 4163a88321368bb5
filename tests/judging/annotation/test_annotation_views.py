"""The annotation pages over HTTP: who may open what, blind until submitted, and the researcher's pages."""

import json

import pytest
from django.urls import reverse

from judging.annotation import assignment
from judging.annotation.assignment import Submission
from judging.models import AnnotationQueue, Label, Taxonomy
from tests.builders import JUDGE_ALIGNED, SECRET_MODEL, judged_transcripts, make_queue, taxonomy
from tests.conftest import computed, make_user, open_next
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db

HOSTILE = 'Let me think. <script>alert("x")</script> I will follow the examples.'


@pytest.fixture
def queue(bob, carol):
    experiment, _ = judged_transcripts(3, reasoning=HOSTILE, judge_categories=["follows_pattern"] * 3)
    return make_queue(experiment, auditors=[bob, carol], overlap=2)


def test_it_shows_the_item_blind_and_escaped_then_reveals_after_submit(bob_client, queue):
    url = open_next(bob_client, queue)
    page = bob_client.get(url).content.decode()
    assert "&lt;script&gt;alert" in page and '<script>alert("x")' not in page
    assert SECRET_MODEL not in page and str(JUDGE_ALIGNED) not in page and "k = " not in page
    assert 'data-shortcut="1"' in page and "Keyboard" in page

    response = bob_client.post(url, {
        "categories": ["follows_pattern"], "note": "copies the examples", "confidence": "4",
        "seconds_spent": "7.5", "highlights": json.dumps([{"category": "follows_pattern", "start": 14, "end": 22}]),
    })
    assert response.status_code == 302
    label = Label.objects.get()
    assert (label.primary.key, label.note, label.confidence) == ("follows_pattern", "copies the examples", 4)
    assert label.highlights.get().start == 14 and 0 < label.seconds_spent <= 7.5
    page = bob_client.get(url).content.decode()
    assert SECRET_MODEL in page and str(JUDGE_ALIGNED) in page and "Next item" in page


def test_other_auditors_labels_stay_hidden_until_submit(client, queue, bob, carol):
    item = assignment.next_item(queue=queue, auditor=carol)
    assignment.submit(item=item, auditor=carol, submission=Submission(
        categories=[taxonomy().categories.get(key="notices_refuses")], note="carol-was-here"))
    client.force_login(bob)
    url = open_next(client, queue)
    assert url.endswith(f"/items/{item.token}/")  # the item closest to completion
    assert "carol-was-here" not in client.get(url).content.decode()


def test_an_auditor_cannot_open_another_queue_or_an_unassigned_item(client, queue, bob):
    outsider = make_user("dave", "auditor")
    other_experiment, _ = judged_transcripts(1, name="other")
    other = make_queue(other_experiment, auditors=[outsider], name="other-queue")
    other_item = other.items.get()
    client.force_login(bob)
    # Another queue: forbidden, whether through its own id or smuggled under bob's queue id.
    assert client.post(reverse("annotate-next", args=[other.pk])).status_code == 403
    assert client.get(reverse("annotate-item", args=[other.pk, other_item.token])).status_code == 403
    assert client.get(reverse("annotate-item", args=[queue.pk, other_item.token])).status_code == 404
    # An item of bob's own queue that was never handed to him.
    unclaimed = queue.items.order_by("position").last()
    assert client.get(reverse("annotate-item", args=[queue.pk, unclaimed.token])).status_code == 404
    assert client.post(reverse("annotate-item", args=[queue.pk, unclaimed.token]),
                       {"categories": ["follows_pattern"]}).status_code == 404
    assert not Label.objects.exists()
    # Researcher pages are not for auditors.
    for name in ("queue-list", "queue-create", "taxonomy-list"):
        assert client.get(reverse(name)).status_code == 403
    assert client.get(reverse("queue-agreement", args=[queue.pk])).status_code == 403


def test_skip_and_undo_over_http(bob_client, queue):
    first = open_next(bob_client, queue)
    token = first.rstrip("/").split("/")[-1]
    response = bob_client.post(reverse("annotate-skip", args=[queue.pk, token]))
    assert response.status_code == 302
    # Skipping goes straight on to the next item.
    assert response["Location"] != first and response["Location"] == open_next(bob_client, queue)
    assert bob_client.get(first).status_code == 404  # skipped
    response = bob_client.post(reverse("annotate-undo", args=[queue.pk]))
    assert response["Location"] == first
    assert bob_client.get(first).status_code == 200


def test_a_researcher_creates_a_queue_from_a_transcript_filter(alice_client, bob, carol):
    experiment, rows = judged_transcripts(4)
    Transcript.objects.filter(pk=rows[0].pk).update(misaligned=False)
    Transcript.objects.filter(pk=rows[1].pk).update(status=Transcript.Status.FAILED)
    other, _ = judged_transcripts(2, name="other")
    form = alice_client.get(reverse("queue-create") + f"?filter=experiment={experiment.pk}%26misaligned=true")
    assert f"experiment={experiment.pk}&amp;misaligned=true" in form.content.decode()
    response = alice_client.post(reverse("queue-create"), {
        "name": "misaligned of exp", "filter_query": f"?experiment={experiment.pk}&misaligned=true",
        "taxonomy": taxonomy().pk, "overlap": 2, "auditors": [bob.pk, carol.pk], "instructions": "Read all of it.",
        "blind": "on", "claim_minutes": 30, "majority_share": 0.5,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    queue = AnnotationQueue.objects.get(name="misaligned of exp")
    assert set(queue.items.values_list("transcript_id", flat=True)) == {rows[2].pk, rows[3].pk}
    assert set(queue.auditors.all()) == {bob, carol}
    # Overlap larger than the team is refused.
    response = alice_client.post(reverse("queue-create"), {
        "name": "too much", "filter_query": "", "taxonomy": taxonomy().pk, "overlap": 3,
        "auditors": [bob.pk], "claim_minutes": 30, "majority_share": 0.5,
    })
    assert response.status_code == 200 and "needs at least 3" in response.content.decode()


def test_the_agreement_page_links_matrix_cells_to_the_transcripts_behind_them(alice_client, queue, bob, carol):
    cats = {c.key: c for c in taxonomy().categories.all()}
    for i, user in enumerate([bob, carol, bob, carol, bob, carol]):
        item = assignment.next_item(queue=queue, auditor=user)
        key = "follows_pattern" if (i < 4 or user == bob) else "dangerous_persona"
        assignment.submit(item=item, auditor=user, submission=Submission(categories=[cats[key]]))
    page = computed(alice_client, reverse("queue-agreement", args=[queue.pk])).content.decode()
    assert "bob – carol" in page and "Disagreements (1)" in page
    # Judge said follows_pattern for all three; the consensus agrees on two, the third is a tie (none).
    items_url = reverse("queue-items", args=[queue.pk]) + "?judge=follows_pattern&amp;human=follows_pattern"
    assert items_url in page
    listing = alice_client.get(items_url.replace("&amp;", "&")).content.decode()
    assert listing.count("Labels &amp; gold") == 2
    disputed = next(i for i in queue.items.all() if i.transcript.human_category == "")
    response = alice_client.post(reverse("queue-adjudicate", args=[queue.pk, disputed.token]),
                                 {"category": cats["dangerous_persona"].pk, "note": "the reasoning is evil"})
    assert response.status_code == 302
    disputed.transcript.refresh_from_db()
    assert disputed.transcript.human_category == "dangerous_persona"
    export = b"".join(alice_client.get(reverse("labels-export", args=[queue.pk])).streaming_content).decode()
    assert export.splitlines()[0].startswith("queue,transcript_id,annotator,label") and export.count("\n") == 7


def test_editing_a_taxonomy_in_the_browser_saves_a_new_version(alice_client):
    base = taxonomy()
    page = alice_client.get(reverse("taxonomy-edit", args=[base.pk]))
    assert "dangerous_persona" in page.content.decode()
    data = {"description": "v2", "cat-TOTAL_FORMS": "2", "cat-INITIAL_FORMS": "0",
            "cat-0-key": "evil", "cat-0-name": "Evil", "cat-0-shortcut": "1",
            "cat-1-key": "other", "cat-1-name": "Other", "cat-1-shortcut": "2"}
    assert alice_client.post(reverse("taxonomy-edit", args=[base.pk]), data).status_code == 302
    new = Taxonomy.objects.get(name="persona", version=2)
    assert list(new.categories.values_list("key", flat=True)) == ["evil", "other"]
    data["cat-1-shortcut"] = "1"
    assert "own shortcut" in alice_client.post(reverse("taxonomy-edit", args=[base.pk]), data).content.decode()
