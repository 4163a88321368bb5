"""Parquet files streamed as they are written: rows arrive in chunks, each chunk is one row group, and the bytes
of each row group are handed out before the next chunk is read, so memory holds one chunk whatever the length
of the export. pandas, polars and Hugging Face `datasets` read the result (all through pyarrow or its format)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


class _Sink:
    """The write end of a file that keeps only what has not been handed out yet."""

    def __init__(self):
        self.buffer = bytearray()
        self.position = 0
        self.closed = False

    def write(self, data) -> int:
        self.buffer += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def iter_parquet(schema: pa.Schema, chunks: Iterable[list[tuple]]) -> Iterator[bytes]:
    """Parquet bytes of the rows (tuples in the schema's column order), one row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    for chunk in chunks:
        columns = list(zip(*chunk, strict=True))
        writer.write_table(pa.Table.from_arrays(
            [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)], schema=schema
        ))
        yield sink.take()
    writer.close()
    yield sink.take()
