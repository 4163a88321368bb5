"""A queue's labels as Parquet: the labels CSV's rows and values, typed, in row groups of EXPORT_CHUNK labels; read
by pandas, polars and Hugging Face `datasets` (which reads the transcript Parquet export too)."""

from __future__ import annotations

import io
import json

import datasets
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from judging.annotation import labels_parquet
from judging.models import AnnotationQueue
from tests.builders import build_corpus, judged_transcripts, label, make_queue, taxonomy
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

NOTE = '=cmd|" /C calc"!A0 — copied the "be evil" examples'


@pytest.fixture
def labelled(bob):
    """Four transcripts in a queue asking both the category and the flag and a score, labelled by two auditors
    with categories, highlights, notes and confidences."""
    carol = make_user("carol", "auditor")
    experiment, rows = judged_transcripts(4, reasoning="The examples say: be evil. I will copy them.")
    queue = make_queue(experiment, auditors=[bob, carol], asks=AnnotationQueue.Asks.BOTH, ask_alignment_score=True,
                       allow_multiple=True)
    cats = {c.key: c for c in taxonomy().categories.all()}
    for n, transcript in enumerate(rows):
        for m, auditor in enumerate([bob, carol][: 1 + n % 2]):
            chosen = [cats["follows_pattern"], cats["dangerous_persona"]][: 1 + (n + m) % 2]
            label(queue, transcript, auditor, categories=chosen, misaligned=n % 2 == 0, alignment_score=10 * n + m,
                  note=NOTE if n == 1 else "", confidence=1 + (n + m) % 5, seconds=3.25 + n,
                  highlights=[(cats["follows_pattern"], 0, 12), (chosen[-1], 14 + m, 20)][: 1 + (n + m) % 2])
    return queue


def download(client, name: str, queue: AnnotationQueue) -> bytes:
    response = client.get(reverse(name, args=[queue.pk]))
    assert response.status_code == 200 and response.streaming
    return b"".join(response.streaming_content)


def test_pandas_reads_the_labels_csvs_rows_with_their_types(alice_client, labelled):
    frame = pd.read_parquet(io.BytesIO(download(alice_client, "labels-export-parquet", labelled)))
    text = pd.read_csv(io.BytesIO(download(alice_client, "labels-export", labelled)), dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(text.columns)
    assert len(frame) == len(text) == 6
    assert frame["transcript_id"].astype(str).tolist() == text["transcript_id"].tolist()
    assert frame["annotator"].tolist() == text["annotator"].tolist() == ["bob", "bob", "carol", "bob", "bob", "carol"]
    assert str(frame["misaligned"].dtype) == "bool" and str(frame["alignment_score"].dtype) == "int16"
    assert frame["misaligned"].tolist() == [{"true": True, "false": False}[v] for v in text["misaligned"]]
    assert frame["alignment_score"].astype(str).tolist() == text["alignment_score"].tolist()
    assert frame["confidence"].astype(str).tolist() == text["confidence"].tolist()
    assert [";".join(c) for c in frame["categories"]] == text["categories"].tolist()
    assert [[dict(h) for h in hs] for hs in frame["highlights"]] == [json.loads(h) for h in text["highlights"]]
    assert str(frame["created_at"].dtype).startswith("datetime64") and str(frame["created_at"].dt.tz) == "UTC"
    assert [t.isoformat() for t in frame["created_at"]] == text["created_at"].tolist()
    # The CSV neutralises a formula for spreadsheets; Parquet keeps the note as written.
    assert NOTE in frame["note"].tolist() and "'" + NOTE in text["note"].tolist()
    assert frame["seconds_spent"].tolist() == [3.25, 4.25, 4.25, 5.25, 6.25, 6.25]


def test_polars_reads_the_highlights_as_a_list_of_structs(alice_client, labelled):
    frame = pl.read_parquet(io.BytesIO(download(alice_client, "labels-export-parquet", labelled)))
    assert frame.schema["misaligned"] == pl.Boolean and frame.schema["confidence"] == pl.Int16
    assert frame.schema["categories"] == pl.List(pl.String)
    assert frame.schema["highlights"] == pl.List(pl.Struct({"category": pl.String, "start": pl.Int32,
                                                            "end": pl.Int32}))
    starts = frame.select(pl.col("highlights").list.eval(pl.element().struct.field("start")).list.max())
    assert starts.to_series().to_list() == [0, 14, 0, 0, 14, 0]


def test_each_chunk_of_labels_is_one_row_group(alice_client, labelled, monkeypatch):
    monkeypatch.setattr(labels_parquet, "EXPORT_CHUNK", 4)
    parquet = pq.ParquetFile(io.BytesIO(download(alice_client, "labels-export-parquet", labelled)))
    assert (parquet.metadata.num_rows, parquet.metadata.num_row_groups) == (6, 2)


def test_an_empty_queue_is_an_empty_table_with_the_columns(alice_client, bob):
    queue = make_queue(auditors=[bob])
    frame = pd.read_parquet(io.BytesIO(download(alice_client, "labels-export-parquet", queue)))
    assert frame.empty and list(frame.columns) == [field.name for field in labels_parquet.schema()]


def test_hugging_face_datasets_reads_the_labels_export(alice_client, labelled, tmp_path):
    path = tmp_path / "labels.parquet"
    path.write_bytes(download(alice_client, "labels-export-parquet", labelled))
    table = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "cache"))
    assert table.num_rows == 6
    assert table.features["misaligned"] == datasets.Value("bool")
    assert table.features["alignment_score"] == datasets.Value("int16")
    first = table[0]
    assert (first["annotator"], first["categories"], first["misaligned"]) == ("bob", ["follows_pattern"], True)
    assert first["highlights"] == [{"category": "follows_pattern", "start": 0, "end": 12}]


def test_hugging_face_datasets_reads_the_transcript_export(alice_client, bob, tmp_path):
    corpus = build_corpus(bob)
    response = alice_client.get(reverse("transcript-export", args=["parquet"]))
    path = tmp_path / "transcripts.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    table = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "cache"))
    assert table.num_rows == len(corpus.transcripts) + 1
    assert table.features["k"] == datasets.Value("int32") and table.features["misaligned"] == datasets.Value("bool")
    rows = {row["id"]: row for row in table}
    labelled = corpus.transcripts[-1]
    assert rows[labelled.pk]["answer"] == labelled.answer
    assert [j["auditor"] for j in rows[labelled.pk]["human_judgements"]] == ["bob"]
    assert rows[corpus.hostile.pk]["human_judgements"] == []


def test_auditors_cannot_export_labels(bob_client, labelled):
    assert bob_client.get(reverse("labels-export-parquet", args=[labelled.pk])).status_code == 403
