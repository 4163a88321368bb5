"""Attacks through the labels CSV import (researchers): writing labels in the name of someone who is not an
auditor of the queue, and replacing an auditor's submitted label without a trace. See judging.annotation.labels_io,
judging.annotation.label_history and docs/security.md."""

from html import unescape

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from judging.models import Label
from tests.builders import judged_transcripts, make_queue
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(alice, bob):
    experiment, _ = judged_transcripts(2)
    return make_queue(experiment, auditors=[bob], overlap=2)


def upload(client, queue, rows: list[tuple]) -> list[str]:
    """POST a labels CSV of (transcript id, annotator, category) rows as the queue page's form does; the
    messages shown."""
    text = "transcript_id,annotator,label\n" + "".join(f"{tid},{who},{key}\n" for tid, who, key in rows)
    response = client.post(reverse("labels-import", args=[queue.pk]),
                           {"file": SimpleUploadedFile("labels.csv", text.encode(), content_type="text/csv")})
    assert response.status_code == 302
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("who", ["stranger", "member-not-auditor", "root"])
def test_labels_in_the_name_of_anyone_but_the_queues_auditors_are_refused_and_nothing_is_written(
    alice, alice_client, bob, queue, who
):
    # An auditor of another queue; a researcher who is a member of this queue (no auditor role); the superuser,
    # not a member. Only bob, a member with the auditor role, could have labelled these items himself.
    if who == "stranger":
        make_user(who, "auditor")
    elif who == "member-not-auditor":
        queue.auditors.add(make_user(who, "researcher"))
    else:
        make_user(who, is_superuser=True, is_staff=True)
    first, second = queue.items.order_by("position").values_list("transcript_id", flat=True)
    shown = upload(alice_client, queue, [(first, "bob", "follows_pattern"), (second, who, "dangerous_persona")])
    assert shown == [
        "Nothing imported: fix these rows and upload the file again.",
        f'labels.csv, line 3, field "annotator": {who!r} is not an auditor of queue {queue.name}: labels are '
        "imported only for its members with the auditor role",
    ]
    assert not Label.objects.exists()  # not even bob's valid row
    assert sum(queue.items.values_list("label_count", flat=True)) == 0


def test_an_unknown_annotator_is_named_as_unknown(alice_client, queue):
    (first, *_) = queue.items.values_list("transcript_id", flat=True)
    shown = upload(alice_client, queue, [(first, "nobody", "follows_pattern")])
    assert shown[1] == "labels.csv, line 2, field \"annotator\": no user named 'nobody'"
    assert not Label.objects.exists()


def test_an_import_over_a_submitted_label_is_recorded_with_who_when_and_before_after(
    alice, alice_client, bob, queue
):
    bob_client = Client()
    bob_client.force_login(bob)
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    assert bob_client.post(url, {"categories": ["follows_pattern"], "note": "bob's own view"}).status_code == 302
    label = Label.objects.get()

    rows = [(label.item.transcript_id, "bob", "dangerous_persona")]
    assert upload(alice_client, queue, rows) == ["Imported labels: 0 new, 1 replaced."]
    label.refresh_from_db()
    assert label.primary.key == "dangerous_persona"  # replacing stays possible (fix a file, import it again) …

    # … and the researcher sees what was replaced, by whom, where the label is shown.
    page = unescape(alice_client.get(reverse("queue-adjudicate", args=[queue.pk, label.item.token])).content.decode())
    changes = page.split('id="label-changes"')[1].split("</ul>")[0]
    assert "bob's label, CSV import by alice" in changes
    assert "primary follows_pattern → dangerous_persona" in changes
    assert "note bob's own view → —" in changes  # the import's empty note replaced bob's
    revision = label.item.label_revisions.get()
    assert (revision.auditor, revision.changed_by, revision.source) == (bob, alice, "import")
    assert revision.before["primary"] == "follows_pattern" and revision.after["primary"] == "dangerous_persona"
    assert revision.before["categories"] == ["follows_pattern"] and revision.after["categories"] == [
        "dangerous_persona"]

    # The same file again changes nothing, so it records nothing.
    assert upload(alice_client, queue, rows) == ["Imported labels: 0 new, 1 replaced."]
    assert label.item.label_revisions.count() == 1


def test_an_auditors_undo_of_a_submitted_label_is_recorded_as_withdrawn(alice_client, bob, queue):
    # In a queue that is not blind an auditor may take back a submitted label and submit another: the first
    # stays on record.
    queue.blind = False
    queue.save(update_fields=["blind"])
    bob_client = Client()
    bob_client.force_login(bob)
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    bob_client.post(url, {"categories": ["follows_pattern"]})
    assert bob_client.post(reverse("annotate-undo", args=[queue.pk]))["Location"] == url
    bob_client.post(url, {"categories": ["dangerous_persona"]})
    label = Label.objects.get()
    assert label.primary.key == "dangerous_persona"

    page = unescape(alice_client.get(reverse("queue-adjudicate", args=[queue.pk, label.item.token])).content.decode())
    assert "bob's label, auditor's undo by bob:\n        withdrawn" in page
    revision = label.item.label_revisions.get()
    assert revision.before["primary"] == "follows_pattern" and revision.after is None
