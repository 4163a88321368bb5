"""The Parquet export against the CSV export, at the size of the bench database of `generate_bench_data`
(1M transcripts, see bench/dashboard.py):

    createdb -h 127.0.0.1 -U postgres em_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py generate_bench_data --rows 1000000
    .venv/bin/python bench/parquet_export.py

Writes both exports of every transcript (browse.exporting.iter_csv and iter_parquet, the functions the download
streams) to files, sampling this process's RSS meanwhile, then reads each back with pandas and polars, timing
the loads, and checks that the Parquet holds the CSV's rows and values, typed. Prints:
- each export's rows/s, size, and peak RSS growth (target: the Parquet export ≤ 300 MB, i.e. one chunk of rows
  and its row group, not the file);
- each load's seconds with pandas and polars, and the CSV/Parquet ratio (target: Parquet loads faster);
- the equality check of every column (CSV parsed as the export writes it: t/f booleans, empty = null).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/em_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")

import django  # noqa: E402

django.setup()

import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402

from bench.dashboard import rss_kb  # noqa: E402
from browse import export_rows, exporting  # noqa: E402
from transcripts.models import Transcript  # noqa: E402
from transcripts.spreadsheet_safety import restore  # noqa: E402

RSS_TARGET_MB = 300
failed = []


def write(fmt: str, path: Path) -> tuple[float, float]:
    """(seconds, peak RSS growth in MB) of writing the export of every transcript to `path`."""
    _, iterator = exporting.FORMATS[fmt]
    pid = os.getpid()
    baseline = peak = rss_kb(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    with path.open("wb") as out:
        for block in iterator(Transcript.objects.all()):
            out.write(block)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, (peak - baseline) / 1024


def timed(load) -> tuple[float, object]:
    start = time.perf_counter()
    frame = load()
    return time.perf_counter() - start, frame


def main() -> None:
    total = Transcript.objects.count()
    print(f"{total:,} transcripts", flush=True)
    directory = Path(tempfile.mkdtemp(prefix="em_parquet_"))
    files = {fmt: directory / f"transcripts.{fmt}" for fmt in ("csv", "parquet")}
    print("\n== export ==")
    for fmt, path in files.items():
        seconds, growth = write(fmt, path)
        print(f"{fmt:8} {total / seconds:10,.0f} rows/s ({seconds:.1f} s, {path.stat().st_size / 1e6:,.0f} MB), "
              f"peak RSS growth {growth:.0f} MB", flush=True)
        if fmt == "parquet" and growth > RSS_TARGET_MB:
            failed.append(f"Parquet export RSS growth {growth:.0f} MB > {RSS_TARGET_MB}")

    print("\n== load ==")
    loads = {
        "pandas": (lambda: pd.read_csv(files["csv"], keep_default_na=False, dtype=str),
                   lambda: pd.read_parquet(files["parquet"])),
        "polars": (lambda: pl.read_csv(files["csv"], infer_schema=False),
                   lambda: pl.read_parquet(files["parquet"])),
    }
    frames = {}
    for library, (csv_load, parquet_load) in loads.items():
        csv_seconds, csv_frame = timed(csv_load)
        parquet_seconds, parquet_frame = timed(parquet_load)
        frames[library] = (csv_frame, parquet_frame)
        ratio = csv_seconds / parquet_seconds
        print(f"{library:7} CSV {csv_seconds:6.2f} s · Parquet {parquet_seconds:6.2f} s · Parquet {ratio:.1f}× faster "
              f"{'ok' if ratio > 1 else 'SLOWER'}", flush=True)
        if ratio <= 1:
            failed.append(f"{library}: Parquet loads slower than CSV")

    print("\n== equal to the CSV ==")
    csv_frame, parquet_frame = frames["polars"]
    print("types:", ", ".join(f"{name}={dtype}" for name, dtype in parquet_frame.schema.items()
                              if name in ("id", "k", "temperature", "aligned", "misaligned", "human_judgements")))
    assert parquet_frame.height == csv_frame.height == total
    unequal = []
    for name in export_rows.HEADERS:
        if name == "human_judgements":  # JSON text in the CSV, a list of structs in Parquet: compared by count
            ours = parquet_frame[name].list.len().to_list()
            theirs = [0 if not text else text.count('"auditor"') for text in csv_frame[name].to_list()]
        else:
            column = parquet_frame[name]
            if column.dtype == pl.Boolean:
                ours = [None if v is None else "t" if v else "f" for v in column.to_list()]
            else:
                # The CSV writes an empty text and NULL alike: compare both as null.
                ours = [None if v in (None, "") else str(v) for v in column.to_list()]
            # The CSV neutralises text a spreadsheet would run as a formula; Parquet keeps it verbatim.
            theirs = [restore(v) if v not in ("", None) else None for v in csv_frame[name].to_list()]
            if column.dtype in (pl.Float64, pl.Float32):
                ours = [None if v is None else float(v) for v in ours]
                theirs = [None if v is None else float(v) for v in theirs]
        if ours != theirs:
            unequal.append(name)
    print("every column equal" if not unequal else f"UNEQUAL: {', '.join(unequal)}")
    if unequal:
        failed.append(f"columns differ: {unequal}")
    for path in files.values():
        path.unlink()
    if failed:
        print("\nFAILED:", "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
