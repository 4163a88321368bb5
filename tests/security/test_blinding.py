"""Attacks on blind annotation over HTTP: relabelling after the reveal, reading the condition off the queue's
order or the item ids, claiming items through a cross-site GET or a forged POST, and opening the workspace
without the auditor role or queue membership. See docs/annotation.md, "Blinding"."""

import random
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from judging.models import AnnotationQueue, Assignment, Label, QueueItem
from tests.builders import SECRET_MODEL, judged_transcripts, make_queue
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture
def queue(bob, carol):
    experiment, _ = judged_transcripts(3)
    return make_queue(experiment, auditors=[bob, carol], overlap=2)


def claim(client, queue) -> str:
    response = client.post(reverse("annotate-next", args=[queue.pk]))
    assert response.status_code == 302
    return response["Location"]


def item_at(url: str) -> QueueItem:
    return QueueItem.objects.get(token=url.rstrip("/").split("/")[-1])


def test_a_label_cannot_be_undone_and_changed_once_the_page_revealed_the_condition(bob_client, queue):
    url = claim(bob_client, queue)
    assert bob_client.post(url, {"categories": ["follows_pattern"]}).status_code == 302
    revealed = bob_client.get(url).content.decode()
    assert SECRET_MODEL in revealed and 'id="undo-form"' not in revealed  # no `u` offered after the reveal

    # The auditor sends the undo anyway, then relabels with what the reveal told them.
    response = bob_client.post(reverse("annotate-undo", args=[queue.pk]))
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Your last label is final: its page showed the model, the judge and the other labels. "
        "Ask a researcher to adjudicate the item if it was a slip."
    ]
    bob_client.post(url, {"categories": ["dangerous_persona"]})
    label = Label.objects.get()
    assert label.primary.key == "follows_pattern" and label.item == item_at(url)
    assert Assignment.objects.get(auditor__username="bob").status == Assignment.Status.SUBMITTED


def test_a_skip_reveals_nothing_and_can_still_be_undone_with_u(bob_client, queue):
    url = claim(bob_client, queue)
    bob_client.post(reverse("annotate-skip", args=[queue.pk, item_at(url).token]))
    response = bob_client.post(reverse("annotate-undo", args=[queue.pk]))
    assert response["Location"] == url


def test_the_order_auditors_see_cannot_be_recomputed_from_the_queue_id(bob, bob_client):
    experiment, rows = judged_transcripts(12)
    queue = make_queue(experiment, auditors=[bob], overlap=1)
    # The attack on the old shuffle: the auditor knows the queue id from the URL and replays the seeded generator
    # over the transcripts in creation order (which follows the condition) to know each item's condition.
    predicted = sorted(t.pk for t in rows)
    random.Random(f"{queue.pk}:0").shuffle(predicted)
    seen = []  # what the auditor reads, item after item (transcript i says "Reasoning number i")
    for _ in rows:
        url = claim(bob_client, queue)
        number = int(re.search(r"Reasoning number (\d+)", bob_client.get(url).content.decode()).group(1))
        seen.append(rows[number].pk)
        bob_client.post(url, {"categories": ["follows_pattern"]})
    assert sorted(seen) == sorted(predicted)
    assert seen != predicted  # a coincidence here has odds of 1 in 12! (479,001,600)


def test_item_urls_carry_a_random_token_not_the_sequential_id_or_position(bob, bob_client):
    experiment, rows = judged_transcripts(4)
    queue = make_queue(experiment, auditors=[bob], overlap=1)
    urls = []
    for _ in rows:
        url = claim(bob_client, queue)
        urls.append(url)
        bob_client.post(url, {"categories": ["follows_pattern"]})
    items = [item_at(url) for url in urls]
    for url, item in zip(urls, items, strict=True):
        assert re.fullmatch(rf"/annotate/{queue.pk}/items/{UUID}/", url)
        assert f"/{item.pk}/" not in url and f"/{item.position}/" not in url
    # Old-style ids are no way in either: an item is found by its token only.
    assert bob_client.get(f"/annotate/{queue.pk}/items/{items[0].pk}/").status_code == 404


def test_a_cross_site_get_of_the_next_item_url_claims_nothing(bob_client, queue):
    response = bob_client.get(reverse("annotate-next", args=[queue.pk]))
    assert response.status_code == 200 and 'id="next-form"' in response.content.decode()
    assert not Assignment.objects.exists()


def test_a_post_without_the_csrf_token_claims_nothing(bob, queue):
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(bob)
    assert forged.post(reverse("annotate-next", args=[queue.pk])).status_code == 403
    assert not Assignment.objects.exists()
    # The page's own form, token included, does claim.
    page = forged.get(reverse("annotate-next", args=[queue.pk])).content.decode()
    token = re.search(r'id="next-form">.*?name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = forged.post(reverse("annotate-next", args=[queue.pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and Assignment.objects.get().auditor == bob


def test_a_queue_member_without_the_auditor_role_cannot_open_annotation_pages(alice, alice_client, bob, queue):
    queue.auditors.add(alice)  # a researcher added to the queue by mistake
    item = queue.items.first()
    Assignment.objects.create(item=item, auditor=alice, expires_at="2999-01-01T00:00Z")
    for response in (
        alice_client.get(reverse("annotate-home")),
        alice_client.get(reverse("annotate-next", args=[queue.pk])),
        alice_client.post(reverse("annotate-next", args=[queue.pk])),
        alice_client.get(reverse("annotate-item", args=[queue.pk, item.token])),
        alice_client.post(reverse("annotate-item", args=[queue.pk, item.token]), {"categories": ["follows_pattern"]}),
    ):
        assert response.status_code == 403
    assert not Label.objects.exists() and Assignment.objects.count() == 1


def test_an_auditor_outside_the_queue_cannot_open_it(client, queue):
    client.force_login(make_user("dave", "auditor"))
    assert client.get(reverse("annotate-next", args=[queue.pk])).status_code == 403
    assert client.post(reverse("annotate-next", args=[queue.pk])).status_code == 403
    assert not Assignment.objects.exists() and AnnotationQueue.objects.get().auditors.count() == 2
