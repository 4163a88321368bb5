"""A queue's labels as Parquet: the labels CSV's columns and rows (labels_io.COLUMNS, label_values), typed, one
row group per EXPORT_CHUNK labels, streamed as each group is written (transcripts.parquet), so memory holds one
chunk whatever the queue's size. pandas, polars and Hugging Face `datasets` read it without parsing: the flag is
a boolean, the score and confidence integers, the categories a list of keys, the highlights a list of
(category, start, end) structs, the time a UTC timestamp. docs/exporting.md documents the columns."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING

from transcripts import parquet

from ..models import AnnotationQueue
from .labels_io import COLUMNS, EXPORT_CHUNK, label_values

if TYPE_CHECKING:
    import pyarrow as pa


def schema() -> pa.Schema:
    """COLUMNS as an Arrow schema (pyarrow imported here: browse/exporting.py's parquet_schema says why)."""
    import pyarrow as pa

    highlight = pa.struct([("category", pa.string()), ("start", pa.int32()), ("end", pa.int32())])
    types = {
        "queue": pa.string(), "transcript_id": pa.int64(), "annotator": pa.string(), "label": pa.string(),
        "categories": pa.list_(pa.string()), "misaligned": pa.bool_(), "alignment_score": pa.int16(),
        "note": pa.string(), "confidence": pa.int16(), "seconds_spent": pa.float64(), "highlights": pa.list_(highlight),
        "created_at": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(column, types[column]) for column in COLUMNS])


def iter_labels_parquet(queue: AnnotationQueue) -> Iterator[bytes]:
    """The queue's labels as Parquet bytes, one row group per EXPORT_CHUNK labels."""
    values = label_values(queue)

    def chunks() -> Iterator[list[tuple]]:
        while chunk := list(islice(values, EXPORT_CHUNK)):
            yield chunk

    return parquet.iter_parquet(schema(), chunks())
