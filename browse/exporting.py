"""Export of a filtered transcript queryset as CSV or JSON Lines, one row per transcript.

Rows are read in keyset chunks by id (`id > last … LIMIT n`), so memory stays constant and no database
cursor or transaction is held open across the whole export. On PostgreSQL each CSV chunk is produced by
`COPY (SELECT …) TO STDOUT`, the same statement the ORM would run for that chunk, because formatting a
million rows in Python is several times slower than letting the server write CSV; several chunks are written at
once on their own connections, and sent in order (see PRODUCERS). Columns: the condition,
the question, the cached verdicts of the experiment's active rubric versions, every auditor's label
(`auditor:category;…`) and the human consensus.

CSV is opened in spreadsheets, which run a cell that starts with `=`, `+`, `-`, `@`, tab or CR as a formula
("CSV injection"): every cell is neutralised by transcripts.spreadsheet_safety (`neutralise` for values formatted
in Python, `Neutralised` in SQL for COPY). Only text columns are touched, so a negative score stays a number.
JSON Lines is not a spreadsheet format and stays verbatim.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import queue
import threading
from collections import deque
from collections.abc import Iterator

import psycopg
import pyarrow as pa
from django.contrib.postgres.aggregates import JSONBAgg
from django.db import connection, connections, transaction
from django.db.models import Aggregate, CharField, F, JSONField, OuterRef, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Coalesce, Concat, JSONObject

from judging.models import Highlight, Label, LabelRevision
from transcripts import parquet
from transcripts.spreadsheet_safety import Neutralised, neutralise

CHUNK_ROWS = 20_000
BUFFER_BYTES = 256 * 1024

# (header, ORM path) — the single definition of the export's columns.
COLUMNS = [
    ("id", "id"),
    ("experiment", "experiment__name"),
    ("model", "condition__model_name"),
    ("endpoint", "condition__endpoint_name"),
    ("endpoint_version", "condition__endpoint__version"),
    ("served_model", "served_model"),
    ("system_fingerprint", "system_fingerprint"),
    ("dataset", "condition__dataset_name"),
    ("k", "condition__k"),
    ("cot_mode", "condition__cot_mode"),
    ("system_prompt", "condition__system_prompt_name"),
    ("temperature", "condition__temperature"),
    ("question", "question__key"),
    ("domain", "question__domain"),
    ("sample_index", "sample_index"),
    ("seed", "seed"),
    ("status", "status"),
    ("aligned", "aligned"),
    ("coherent", "coherent"),
    ("judge_outcome", "judge_outcome"),
    ("misaligned", "misaligned"),
    ("judge_category", "judge_category"),
    ("human_labels", "human_labels"),
    ("human_consensus", "human_category"),
    ("human_judgements", "human_judgements"),
    ("reasoning", "reasoning"),
    ("answer", "answer"),
]
HEADERS = [header for header, _ in COLUMNS]
JUDGEMENTS_AT = HEADERS.index("human_judgements")


class _JoinLabels(Aggregate):
    """`auditor:category` pairs joined with ';' (STRING_AGG on PostgreSQL, GROUP_CONCAT on SQLite)."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ';')"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="GROUP_CONCAT", **extra)


def _human_labels(*, neutralised: bool = False) -> Subquery:
    joined = _JoinLabels(Concat(F("auditor__username"), Value(":"), F("primary__key"), output_field=CharField()))
    pairs = (
        Label.objects.filter(item__transcript=OuterRef("pk"))
        .order_by()
        .values("item__transcript")
        # Neutralised inside the subquery, where PostgreSQL computes the repeated aggregate once; around
        # it, the subquery would run three times per row.
        .annotate(joined=Neutralised(joined) if neutralised else joined)
        .values("joined")
    )
    return Subquery(pairs, output_field=CharField())


def _json_list(rows: QuerySet, group: str, order_by: tuple[str, ...], **fields) -> Subquery:
    """The rows (restricted to one outer row by `group`) as one JSON array of objects of `fields`; null for none."""
    joined = JSONBAgg(JSONObject(**fields), order_by=order_by)
    return Subquery(rows.order_by().values(group).annotate(joined=joined).values("joined"), output_field=JSONField())


def human_judgements() -> Coalesce:
    """Every auditor's label of the transcript, whole, as a JSON array: one object per label with its queue,
    auditor, misaligned flag, alignment score, primary category, categories, highlights (category, start, end:
    character offsets into the reasoning), note, confidence, seconds spent, when it was made and last changed, and
    its changes (judging.annotation.label_history: who, when, how, and the label before and after).
    docs/exporting.md documents the scheme; the Parquet export types it (PARQUET_TYPES)."""
    categories = Subquery(
        Label.categories.through.objects.filter(label=OuterRef("pk")).order_by().values("label")
        .annotate(keys=JSONBAgg("personacategory__key", order_by="personacategory__key")).values("keys"),
        output_field=JSONField(),
    )
    highlights = _json_list(
        Highlight.objects.filter(label=OuterRef("pk")), "label", ("start", "end", "pk"),
        category="category__key", start="start", end="end",
    )
    changes = _json_list(
        LabelRevision.objects.filter(item=OuterRef("item"), auditor=OuterRef("auditor")), "item", ("changed_at", "pk"),
        changed_at="changed_at", changed_by="changed_by__username", source="source", before="before", after="after",
    )
    labels = _json_list(
        Label.objects.filter(item__transcript=OuterRef("pk")), "item__transcript",
        ("item__queue__name", "auditor__username"),
        queue="item__queue__name", auditor="auditor__username", misaligned="misaligned",
        alignment_score="alignment_score", primary="primary__key",
        categories=Coalesce(categories, Value([], JSONField())),
        highlights=Coalesce(highlights, Value([], JSONField())),
        note="note", confidence="confidence", seconds_spent="seconds_spent", created_at="created_at",
        updated_at="updated_at", changes=Coalesce(changes, Value([], JSONField())),
    )
    return Coalesce(labels, Value([], JSONField()))


def _annotated(queryset: QuerySet, *, neutralised: bool = False) -> QuerySet:
    return queryset.annotate(human_labels=_human_labels(neutralised=neutralised), human_judgements=human_judgements())


def export_rows(queryset: QuerySet) -> QuerySet:
    """The export's values_list, ordered by id (the keyset)."""
    return _annotated(queryset).order_by("id").values_list(*(p for _, p in COLUMNS))


def neutralised_rows(queryset: QuerySet) -> QuerySet:
    """`export_rows` with every text column neutralised in SQL (what COPY writes). The human judgements are one
    JSON array per cell, which starts with `[` (no formula), its texts quoted inside it."""
    annotated = _annotated(queryset, neutralised=True)
    probe = annotated.query.chain()  # resolving a path adds its joins; look on a copy

    def column(path: str):
        is_text = isinstance(probe.resolve_ref(path).output_field, CharField | TextField)
        return Neutralised(F(path)) if is_text and path not in annotated.query.annotations else path

    return annotated.order_by("id").values_list(*(column(p) for _, p in COLUMNS))


@contextlib.contextmanager
def _without_jit() -> Iterator[None]:
    """A transaction for reading one chunk, without PostgreSQL's JIT: the server compiles a query whose estimated
    cost passes jit_above_cost, and the label subquery puts a 20,000-row chunk far past it; at 10M rows each
    chunk spent 56 ms of its ~230 compiling (168 s → 94 s for the whole CSV export)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


def keyset_chunks(rows: QuerySet, size: int | None = None) -> Iterator[list]:
    """The rows (a queryset ordered by id, of tuples whose first value is the id, or of objects) in chunks of
    `size` (CHUNK_ROWS), each read by `id > last … LIMIT size` in a transaction of its own."""
    size = size or CHUNK_ROWS
    last = 0
    while True:
        with _without_jit():
            chunk = list(rows.filter(id__gt=last)[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0] if isinstance(chunk[-1], tuple) else chunk[-1].pk


def _chunks(queryset: QuerySet) -> Iterator[list[tuple]]:
    return keyset_chunks(export_rows(queryset))


def iter_jsonl(queryset: QuerySet) -> Iterator[bytes]:
    for chunk in _chunks(queryset):
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
    for chunk in _chunks(queryset):
        writer.writerows([_csv_value(v) for v in row] for row in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def copy_sql(queryset: QuerySet) -> str:
    """The complete SELECT of the CSV export with its parameters inlined (for COPY, which takes none)."""
    sql, params = neutralised_rows(queryset).query.sql_with_params()
    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def _chunk_bounds(queryset: QuerySet) -> Iterator[tuple[int, int | None]]:
    """(after, up to) id bounds of CHUNK_ROWS rows each, the last one open; each upper bound comes from the id
    index alone."""
    ids = queryset.order_by("id").values_list("id", flat=True)
    last = 0
    while True:
        bound = ids.filter(id__gt=last)[CHUNK_ROWS - 1 : CHUNK_ROWS].first()
        yield last, bound
        if bound is None:
            return
        last = bound


def _copy_chunk(queryset: QuerySet, after: int, up_to: int | None) -> Iterator[bytes]:
    """The CSV rows (after, up_to] of the queryset as PostgreSQL's COPY writes them, in blocks of about
    BUFFER_BYTES, on this thread's connection."""
    chunk = queryset.filter(id__gt=after, **({"id__lte": up_to} if up_to else {}))
    sql = f"COPY ({copy_sql(chunk)}) TO STDOUT WITH (FORMAT csv)"
    with _without_jit(), connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        buffer = bytearray()
        for block in copy:
            buffer += block
            if len(buffer) >= BUFFER_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


# The server writes each chunk's CSV on one core (a socket wait per row on our side), where `psql \copy` of the
# same SELECT gets a parallel plan; so chunks are written on PRODUCERS connections at once, each in its own thread,
# and sent in order. A producer holds at most QUEUED_BLOCKS blocks ahead (about one chunk), which bounds memory.
PRODUCERS = 2
QUEUED_BLOCKS = 40
_END_OF_CHUNK = object()


class _Stopped(Exception):
    """The download ended early (the client went away): the producers give up their chunks."""


class _Producer(threading.Thread):
    """Writes the chunks it is given, in the order given, as blocks into its queue, on its own connection."""

    def __init__(self, queryset: QuerySet, stop: threading.Event):
        super().__init__(daemon=True)
        self.queryset, self.stop = queryset, stop
        self.chunks: queue.SimpleQueue[tuple[int, int | None] | None] = queue.SimpleQueue()
        self.blocks: queue.Queue = queue.Queue(maxsize=QUEUED_BLOCKS)

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def run(self) -> None:
        try:
            while (chunk := self.chunks.get()) is not None:
                for block in _copy_chunk(self.queryset, *chunk):
                    self._put(block)
                self._put(_END_OF_CHUNK)
        except _Stopped:
            pass
        except Exception as error:  # handed to the response, which raises it
            with contextlib.suppress(_Stopped):
                self._put(error)
        finally:
            connections.close_all()  # this thread's own

    def take_chunk(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.blocks.get(timeout=1)
            except queue.Empty:
                # A producer that ended without finishing its chunk would otherwise hold the request forever.
                if not self.is_alive() and self.blocks.empty():
                    raise RuntimeError("the export's producer ended before its chunk was written") from None
                continue
            if item is _END_OF_CHUNK:
                return
            if isinstance(item, Exception):
                raise item
            yield item


def _iter_csv_copy(queryset: QuerySet) -> Iterator[bytes]:
    yield (",".join(HEADERS) + "\n").encode()
    if connection.in_atomic_block:
        # Other connections cannot see this transaction's uncommitted rows: read them here, one chunk at a time.
        for bounds in _chunk_bounds(queryset):
            yield from _copy_chunk(queryset, *bounds)
        return
    stop = threading.Event()
    producers = [_Producer(queryset, stop) for _ in range(PRODUCERS)]
    for producer in producers:
        producer.start()
    try:
        bounds = _chunk_bounds(queryset)
        order: deque[_Producer] = deque()
        for producer, chunk in zip(producers, bounds, strict=False):
            producer.chunks.put(chunk)
            order.append(producer)
        while order:
            producer = order.popleft()
            yield from producer.take_chunk()
            if (chunk := next(bounds, None)) is not None:
                producer.chunks.put(chunk)
                order.append(producer)
    finally:
        stop.set()
        for producer in producers:
            producer.chunks.put(None)
        for producer in producers:
            producer.join()


def iter_csv(queryset: QuerySet) -> Iterator[bytes]:
    """CSV bytes of the queryset, header first. Booleans as t/f and NULL as empty on every backend."""
    if connection.vendor == "postgresql":
        return _iter_csv_copy(queryset)
    return _iter_csv_python(queryset)


# The Arrow type of every column of the Parquet export: numbers, flags and times keep their types, and the human
# judgements are a list of structs (their scheme is human_judgements'), so pandas, polars and `datasets` need no
# parsing; a column not named here is text.
_CHANGE = pa.struct([("changed_at", pa.string()), ("changed_by", pa.string()), ("source", pa.string()),
                     ("before", pa.string()), ("after", pa.string())])
JUDGEMENT = pa.struct([
    ("queue", pa.string()), ("auditor", pa.string()), ("misaligned", pa.bool_()), ("alignment_score", pa.int16()),
    ("primary", pa.string()), ("categories", pa.list_(pa.string())),
    ("highlights", pa.list_(pa.struct([("category", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))),
    ("note", pa.string()), ("confidence", pa.int16()), ("seconds_spent", pa.float64()),
    ("created_at", pa.string()), ("updated_at", pa.string()), ("changes", pa.list_(_CHANGE)),
])
PARQUET_TYPES = {
    "id": pa.int64(), "k": pa.int32(), "temperature": pa.float64(), "sample_index": pa.int32(), "seed": pa.int64(),
    "aligned": pa.float64(), "coherent": pa.float64(), "misaligned": pa.bool_(),
    "human_judgements": pa.list_(JUDGEMENT),
}


def parquet_schema() -> pa.Schema:
    """COLUMNS as an Arrow schema: PARQUET_TYPES' types, text for the rest."""
    return pa.schema([(header, PARQUET_TYPES.get(header, pa.string())) for header in HEADERS])


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
        parquet_schema(), ([_parquet_row(row) for row in chunk] for chunk in _chunks(queryset))
    )


FORMATS = {
    "csv": ("text/csv; charset=utf-8", iter_csv),
    "jsonl": ("application/x-ndjson", iter_jsonl),
    "parquet": ("application/vnd.apache.parquet", iter_parquet),
}
