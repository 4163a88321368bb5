"""Bounded, atomic inputs, tried over HTTP: uploads have a size limit, a labels CSV is all or nothing with
line-numbered errors, numbers are finite and in range, and bad input is a clear message, never a 500."""

import csv
import io
import json

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from judging.models import Label
from tests.judging.annotation_data import queue_over, transcripts

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# ---- labels CSV import -------------------------------------------------------------------------------


@pytest.fixture
def queue(bob, carol):
    experiment, _ = transcripts(3)
    return queue_over(experiment, auditors=[bob, carol], overlap=2)


def upload_labels(client, queue, text: str, name: str = "labels.csv"):
    return client.post(reverse("labels-import", args=[queue.pk]),
                       {"file": SimpleUploadedFile(name, text.encode(), content_type="text/csv")})


def labels_csv(queue, rows: list[list]) -> str:
    ids = list(queue.items.order_by("position").values_list("transcript_id", flat=True))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["transcript_id", "annotator", "label", "confidence", "seconds_spent"])
    writer.writerows([ids[n], *rest] for n, *rest in rows)
    return buffer.getvalue()


def test_a_bad_row_in_the_middle_saves_nothing_and_names_its_line(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "3", "5"], [1, "nobody", "follows_pattern", "", ""],
                              [2, "bob", "follows_pattern", "", ""]])
    response = upload_labels(alice_client, queue, text)
    assert response.status_code == 302
    assert Label.objects.count() == 0
    shown = messages_of(response)
    assert shown[0].startswith("Nothing imported")
    assert 'labels.csv, line 3, field "annotator": no user named \'nobody\'' in shown


@pytest.mark.parametrize(("field", "row"), [
    ("confidence", [1, "bob", "follows_pattern", "40000", ""]),  # overflowed a smallint into a 500
    ("confidence", [1, "bob", "follows_pattern", "0", ""]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "nan"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "inf"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "-3"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "soon"]),
    ("label", [1, "bob", "no_such_category", "", ""]),
])
def test_out_of_range_numbers_are_refused_by_line_and_field(alice_client, queue, field, row):
    response = upload_labels(alice_client, queue, labels_csv(queue, [[0, "bob", "follows_pattern", "", ""], row]))
    assert response.status_code == 302 and Label.objects.count() == 0
    assert any(f'line 3, field "{field}"' in m for m in messages_of(response))


def test_the_same_label_twice_in_one_file_is_refused(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "", ""], [0, "bob", "notices_refuses", "", ""]])
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert any("line 3" in m and "on line 2 already" in m for m in shown) and Label.objects.count() == 0


def test_a_file_that_is_not_utf8_is_refused_without_a_500(alice_client, queue):
    response = alice_client.post(reverse("labels-import", args=[queue.pk]), {"file": SimpleUploadedFile(
        "labels.csv", labels_csv(queue, [[0, "bob", "follows_pattern", "", ""]]).encode() + b"\xff\xfe,\n")})
    assert any("not valid UTF-8" in m for m in messages_of(response)) and Label.objects.count() == 0


def test_an_oversized_labels_upload_is_refused_with_the_limit(alice_client, queue, settings):
    settings.IMPORT_MAX_BYTES = 100
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "", ""]]) + "#" * 200
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert any("IMPORT_MAX_BYTES" in m for m in shown) and Label.objects.count() == 0


def test_a_good_file_imports_every_row_at_once(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "5", "12.5"], [1, "carol", "notices_refuses", "", ""]])
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert shown == ["Imported labels: 2 new, 0 replaced."]
    assert sorted(Label.objects.values_list("auditor__username", "confidence")) == [("bob", 5), ("carol", None)]


def test_exported_formula_cells_come_back_as_they_were(alice_client, queue, bob):
    formula_user = bob.__class__.objects.create_user("@mallory")
    queue.auditors.add(formula_user)
    text = labels_csv(queue, [[0, "@mallory", "follows_pattern", "", ""]])
    text = text.replace("\r\n", ",=1+1\r\n").replace("seconds_spent,=1+1", "seconds_spent,note")
    assert messages_of(upload_labels(alice_client, queue, text)) == ["Imported labels: 1 new, 0 replaced."]
    label = Label.objects.get()
    assert label.note == "=1+1"
    exported = b"".join(alice_client.get(reverse("labels-export", args=[queue.pk])).streaming_content).decode()
    assert "'@mallory" in exported and "'=1+1" in exported
    label.delete()
    shown = messages_of(upload_labels(alice_client, queue, exported))
    assert shown[-1] == "Imported labels: 1 new, 0 replaced." and not any("Nothing" in m for m in shown)
    assert Label.objects.get().note == "=1+1" and Label.objects.get().auditor == formula_user


# ---- highlights on the annotation page -----------------------------------------------------------------


@pytest.mark.parametrize("offset", ["Infinity", "NaN", "1e400", "2.5", '"3"', "true"])
def test_a_highlight_offset_that_is_not_a_whole_number_is_a_400(bob_client, queue, offset):
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    response = bob_client.post(url, {
        "categories": ["follows_pattern"],
        "highlights": f'[{{"category": "follows_pattern", "start": {offset}, "end": 5}}]',
    })
    assert response.status_code == 400
    assert "whole character offsets" in response.content.decode()
    assert Label.objects.count() == 0


def test_a_highlight_beyond_the_reasoning_is_refused(bob_client, queue):
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    response = bob_client.post(url, {
        "categories": ["follows_pattern"],
        "highlights": json.dumps([{"category": "follows_pattern", "start": 0, "end": 10**30}]),
    })
    assert messages_of(response) == ["A highlight lies outside the reasoning."] and Label.objects.count() == 0
