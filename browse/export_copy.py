"""The CSV export on PostgreSQL: each chunk of rows written by the server (`COPY (SELECT …) TO STDOUT`, the same
statement the ORM would run for that chunk), because formatting a million rows in Python is several times slower
than letting the server write CSV; several chunks are written at once on connections of their own and sent in
order (PRODUCERS). What is selected is browse.export_rows.neutralised_rows.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterator

import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections
from django.db.models import QuerySet

from . import export_rows
from .export_rows import HEADERS, neutralised_rows, without_jit

BUFFER_BYTES = 256 * 1024


def copy_sql(queryset: QuerySet) -> str:
    """The complete SELECT of the CSV export with its parameters inlined (for COPY, which takes none)."""
    sql, params = neutralised_rows(queryset).query.sql_with_params()
    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def _chunk_bounds(queryset: QuerySet) -> Iterator[tuple[int, int | None]]:
    """(after, up to) id bounds of CHUNK_ROWS rows each (export_rows), the last one open; each upper bound comes
    from the id index alone."""
    ids = queryset.order_by("id").values_list("id", flat=True)
    last = 0
    while True:
        bound = ids.filter(id__gt=last)[export_rows.CHUNK_ROWS - 1 : export_rows.CHUNK_ROWS].first()
        yield last, bound
        if bound is None:
            return
        last = bound


def _copy_chunk(queryset: QuerySet, after: int, up_to: int | None) -> Iterator[bytes]:
    """The CSV rows (after, up_to] of the queryset as PostgreSQL's COPY writes them, in blocks of about
    BUFFER_BYTES, on this thread's connection."""
    chunk = queryset.filter(id__gt=after, **({"id__lte": up_to} if up_to else {}))
    try:
        sql = f"COPY ({copy_sql(chunk)}) TO STDOUT WITH (FORMAT csv)"
    except EmptyResultSet:  # a filter that matches nothing by construction (an empty `pk__in`) has no SQL to copy
        return
    with without_jit(), connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
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


def iter_csv_copy(queryset: QuerySet) -> Iterator[bytes]:
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


