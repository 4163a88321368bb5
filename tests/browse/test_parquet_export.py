"""The Parquet export: the CSV's rows and values, typed, in row groups of one keyset chunk each; read by pandas,
polars and pyarrow (what Hugging Face `datasets` reads Parquet with)."""

from __future__ import annotations

import io

import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from browse import export_rows
from tests.builders import build_corpus

pytestmark = pytest.mark.django_db


def download(client, fmt: str, params: dict | None = None) -> bytes:
    response = client.get(reverse("transcript-export", args=[fmt]), params or {})
    assert response.status_code == 200 and response.streaming
    return b"".join(response.streaming_content)


def test_pandas_reads_the_csvs_rows_with_their_types(alice_client, bob):
    build_corpus(bob)
    frame = pd.read_parquet(io.BytesIO(download(alice_client, "parquet", {"model": "model-b"})))
    text = pd.read_csv(io.BytesIO(download(alice_client, "csv", {"model": "model-b"})), keep_default_na=False)
    assert list(frame.columns) == list(text.columns) == export_rows.HEADERS
    assert frame["id"].tolist() == text["id"].tolist()
    assert str(frame["k"].dtype) == "int32" and str(frame["aligned"].dtype) == "float64"
    assert frame["misaligned"].tolist() == [{"t": True, "f": False, "": None}[v] for v in text["misaligned"]]
    assert frame["answer"].tolist() == text["answer"].tolist()
    assert frame["human_labels"].fillna("").tolist() == text["human_labels"].tolist()


def test_polars_reads_it_with_the_judgements_as_a_list_of_structs(alice_client, bob):
    build_corpus(bob)
    frame = pl.read_parquet(io.BytesIO(download(alice_client, "parquet")))
    assert frame.schema["k"] == pl.Int32 and frame.schema["misaligned"] == pl.Boolean
    judgements = frame.schema["human_judgements"]
    assert isinstance(judgements, pl.List) and isinstance(judgements.inner, pl.Struct)
    labelled = frame.filter(pl.col("human_labels").is_not_null())
    auditors = labelled.select(pl.col("human_judgements").list.eval(pl.element().struct.field("auditor")))
    assert set(auditors.to_series().explode().to_list()) == {"bob"}


def test_each_keyset_chunk_is_one_row_group(alice_client, bob, monkeypatch):
    corpus = build_corpus(bob)
    monkeypatch.setattr(export_rows, "CHUNK_ROWS", 4)
    data = download(alice_client, "parquet")
    parquet = pq.ParquetFile(io.BytesIO(data))
    rows = len(corpus.transcripts) + 1
    assert parquet.metadata.num_rows == rows
    assert parquet.metadata.num_row_groups == -(-rows // 4)


def test_an_empty_filter_is_an_empty_table_with_the_columns(alice_client, bob):
    build_corpus(bob)
    frame = pd.read_parquet(io.BytesIO(download(alice_client, "parquet", {"aligned_min": "100.5"})))
    assert frame.empty and list(frame.columns) == export_rows.HEADERS
