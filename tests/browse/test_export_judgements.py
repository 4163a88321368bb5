"""Every human judgement is in the transcript exports (CSV, JSON Lines, Parquet) and in /api/labels/, whole: the
flag, the alignment score, the categories, the highlights, the note, the auditor, the times and the changes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from judging.annotation import label_history
from judging.models import Highlight, Label, LabelRevision, PersonaCategory
from tests.builders import build_corpus

pytestmark = pytest.mark.django_db

NOTE = '=HYPERLINK("http://evil") said "kill"'
CHANGED_AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def judged(alice, bob):
    """The corpus, with bob's label on one transcript filled in whole and changed once by alice (a CSV import)."""
    corpus = build_corpus(bob)
    label = Label.objects.filter(auditor=bob).select_related("item__transcript").order_by("pk").first()
    taxonomy = label.primary.taxonomy
    other = PersonaCategory.objects.create(taxonomy=taxonomy, key="deceptive", name="Deceptive", position=9)
    before = label_history.snapshot(label)
    label.misaligned, label.alignment_score, label.note, label.confidence, label.seconds_spent = True, 12, NOTE, 4, 31.5
    label.save()
    label.categories.set([label.primary, other])
    Highlight.objects.create(label=label, category=other, start=3, end=17)
    Highlight.objects.create(label=label, category=label.primary, start=0, end=2)
    label_history.record(label=label, before=before, after=label_history.snapshot(label), changed_by=alice,
                         source=LabelRevision.Source.IMPORT, now=CHANGED_AT)
    return corpus, label


def expected(label: Label) -> dict:
    return {
        "queue": label.item.queue.name, "auditor": "bob", "misaligned": True, "alignment_score": 12,
        "primary": label.primary.key, "categories": sorted([label.primary.key, "deceptive"]),
        "highlights": [{"category": label.primary.key, "start": 0, "end": 2},
                       {"category": "deceptive", "start": 3, "end": 17}],
        "note": NOTE, "confidence": 4, "seconds_spent": 31.5,
    }


def _download(client, fmt: str, transcript_id: int) -> bytes:
    response = client.get(reverse("transcript-export", args=[fmt]), {"q": ""})
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def judgements_csv(client, transcript_id: int) -> list[dict]:
    rows = csv.DictReader(io.StringIO(_download(client, "csv", transcript_id).decode()))
    return json.loads(next(r for r in rows if int(r["id"]) == transcript_id)["human_judgements"])


def judgements_jsonl(client, transcript_id: int) -> list[dict]:
    records = map(json.loads, _download(client, "jsonl", transcript_id).decode().splitlines())
    return next(r for r in records if r["id"] == transcript_id)["human_judgements"]


def judgements_parquet(client, transcript_id: int) -> list[dict]:
    table = pq.read_table(io.BytesIO(_download(client, "parquet", transcript_id)))
    rows = table.to_pylist()
    judgements = next(r for r in rows if r["id"] == transcript_id)["human_judgements"]
    for judgement in judgements:  # the snapshots are JSON text in Parquet (their keys are the label's)
        for change in judgement["changes"]:
            change["before"], change["after"] = json.loads(change["before"]), json.loads(change["after"])
    return judgements


def judgements_api(client, transcript_id: int) -> list[dict]:
    response = client.get("/api/labels/", {"page_size": 500})
    assert response.status_code == 200
    return [r for r in response.json()["results"] if r["transcript"] == transcript_id]


READERS = {"csv": judgements_csv, "jsonl": judgements_jsonl, "parquet": judgements_parquet, "api": judgements_api}


@pytest.mark.parametrize("where", READERS)
@pytest.mark.parametrize("field", ["misaligned", "alignment_score", "primary", "categories", "highlights", "note",
                                   "auditor", "confidence", "seconds_spent", "queue"])
def test_each_human_judgement_field_is_exported(alice_client, judged, where, field):
    _, label = judged
    (judgement,) = READERS[where](alice_client, label.item.transcript_id)
    assert judgement[field] == expected(label)[field]


@pytest.mark.parametrize("where", READERS)
def test_the_time_and_the_changes_of_a_label_are_exported(alice_client, judged, where):
    _, label = judged
    (judgement,) = READERS[where](alice_client, label.item.transcript_id)
    assert datetime.fromisoformat(judgement["created_at"]) == label.created_at
    assert datetime.fromisoformat(judgement["updated_at"]) == Label.objects.get(pk=label.pk).updated_at
    (change,) = judgement["changes"]
    assert datetime.fromisoformat(change["changed_at"]) == CHANGED_AT
    assert (change["changed_by"], change["source"]) == ("alice", "import")
    assert (change["before"]["misaligned"], change["after"]["misaligned"]) == (None, True)
    assert change["after"]["highlights"] == [[label.primary.key, 0, 2], ["deceptive", 3, 17]]


@pytest.mark.parametrize("where", ["csv", "jsonl", "parquet"])
def test_a_transcript_without_labels_has_an_empty_list(alice_client, judged, where):
    corpus, _ = judged
    unlabelled = corpus.hostile.pk
    assert READERS[where](alice_client, unlabelled) == []


def test_the_csv_cell_cannot_run_as_a_formula(alice_client, judged):
    _, label = judged
    rows = csv.DictReader(io.StringIO(_download(alice_client, "csv", 0).decode()))
    cell = next(r for r in rows if int(r["id"]) == label.item.transcript_id)["human_judgements"]
    assert cell.startswith("[{")  # a spreadsheet runs a cell starting with = + - @; the note is inside the JSON


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "eval"])
def test_auditors_cannot_export(bob_client, judged, fmt):
    """Auditors are blind to models, k and scores: every export is the researchers'."""
    assert bob_client.get(reverse("transcript-export", args=[fmt])).status_code == 403


def test_auditors_cannot_read_labels_from_the_api(bob_client, judged):
    assert bob_client.get("/api/labels/").status_code == 403
