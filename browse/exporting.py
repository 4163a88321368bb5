"""Export of a filtered transcript queryset as CSV, JSON Lines or Parquet, one row per transcript (FORMATS).

The rows, their columns and their keyset chunks are browse.export_rows; on PostgreSQL the CSV is written by the
server (browse.export_copy), elsewhere here in Python, byte for byte the same. Columns: the condition, the
question, the cached verdicts of the experiment's active rubric versions, every auditor's label
(`auditor:category;…`), the human consensus and every human judgement whole.

CSV is opened in spreadsheets, which run a cell that starts with `=`, `+`, `-`, `@`, tab or CR as a formula
("CSV injection"): every cell is neutralised by transcripts.spreadsheet_safety (`neutralise` for values formatted
in Python, `Neutralised` in SQL for COPY). Only text columns are touched, so a negative score stays a number.
JSON Lines is not a spreadsheet format and stays verbatim.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import QuerySet

from transcripts import parquet
from transcripts.spreadsheet_safety import neutralise

from .export_copy import iter_csv_copy
from .export_rows import HEADERS, JUDGEMENTS_AT, export_chunks

if TYPE_CHECKING:
    import pyarrow as pa


def iter_jsonl(queryset: QuerySet) -> Iterator[bytes]:
    for chunk in export_chunks(queryset):
        yield "".join(
            json.dumps(dict(zip(HEADERS, row, strict=True)), ensure_ascii=False) + "\n" for row in chunk
        ).encode()


def _jsonb_text(value) -> str:
    """JSON as PostgreSQL writes a jsonb value: an object's keys shortest first, then in byte order."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: (len(item[0].encode()), item[0].encode()))
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_jsonb_text(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _csv_value(value):
    """The value as PostgreSQL's COPY writes it, so both backends produce the same CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):  # the human judgements: JSON text, which starts with `[` (no formula)
        return _jsonb_text(value)
    return neutralise(value)


class _RowsEndingInLF(io.StringIO):
    """A buffer for a csv.writer whose rows end in CRLF, stored ending in LF like COPY's. The writer quotes
    only fields holding characters of its line terminator, and a bare CR in an unquoted field (e.g. a cell
    that starts with one) splits the row for every reader; the writer hands over one whole row per write."""

    def write(self, row: str) -> int:
        return super().write(row[:-2] + "\n")


def _iter_csv_python(queryset: QuerySet) -> Iterator[bytes]:
    buffer = _RowsEndingInLF()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for chunk in export_chunks(queryset):
        writer.writerows([_csv_value(v) for v in row] for row in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def iter_csv(queryset: QuerySet) -> Iterator[bytes]:
    """CSV bytes of the queryset, header first. Booleans as t/f and NULL as empty on every backend."""
    if connection.vendor == "postgresql":
        return iter_csv_copy(queryset)
    return _iter_csv_python(queryset)


def parquet_schema() -> pa.Schema:
    """HEADERS as an Arrow schema: numbers, flags and times keep their types, and the human judgements are a list
    of structs (their scheme is human_judgements'), so pandas, polars and `datasets` need no parsing; a column
    not named here is text. pyarrow is imported here, not with the module: the URL check of every process start
    loads this module (analysis/__init__.py says why that matters)."""
    import pyarrow as pa

    change = pa.struct([("changed_at", pa.string()), ("changed_by", pa.string()), ("source", pa.string()),
                        ("before", pa.string()), ("after", pa.string())])
    judgement = pa.struct([
        ("queue", pa.string()), ("auditor", pa.string()), ("misaligned", pa.bool_()), ("alignment_score", pa.int16()),
        ("primary", pa.string()), ("categories", pa.list_(pa.string())),
        ("highlights", pa.list_(pa.struct([("category", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))),
        ("note", pa.string()), ("confidence", pa.int16()), ("seconds_spent", pa.float64()),
        ("created_at", pa.string()), ("updated_at", pa.string()), ("changes", pa.list_(change)),
    ])
    types = {
        "id": pa.int64(), "endpoint_version": pa.int32(), "k": pa.int32(), "temperature": pa.float64(),
        "sample_index": pa.int32(), "seed": pa.int64(),
        "aligned": pa.float64(), "coherent": pa.float64(), "misaligned": pa.bool_(),
        "human_judgements": pa.list_(judgement),
    }
    return pa.schema([(header, types.get(header, pa.string())) for header in HEADERS])


def _parquet_row(row: tuple) -> tuple:
    """A row with each judgement's before/after snapshots as JSON text (their keys are the label's, not a scheme
    of their own)."""
    judgements = row[JUDGEMENTS_AT]
    for judgement in judgements:
        for change in judgement["changes"]:
            change["before"] = json.dumps(change["before"])
            change["after"] = None if change["after"] is None else json.dumps(change["after"])
    return (*row[:JUDGEMENTS_AT], judgements, *row[JUDGEMENTS_AT + 1 :])


def iter_parquet(queryset: QuerySet) -> Iterator[bytes]:
    """The export as Parquet, one row group per keyset chunk (transcripts.parquet)."""
    return parquet.iter_parquet(
        parquet_schema(), ([_parquet_row(row) for row in chunk] for chunk in export_chunks(queryset))
    )


FORMATS = {
    "csv": ("text/csv; charset=utf-8", iter_csv),
    "jsonl": ("application/x-ndjson", iter_jsonl),
    "parquet": ("application/vnd.apache.parquet", iter_parquet),
}
