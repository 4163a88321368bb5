"""Import benchmark: a 1M-line transcripts JSONL through `manage.py import_transcripts`, then the same file
with a bad line near its end.

    createdb -h 127.0.0.1 -U postgres em_bench_import
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench_import
    .venv/bin/python manage.py migrate && .venv/bin/python bench/importing.py [--rows 1000000]

Before/after: `--baseline DIR --baseline-database URL` first imports the same file with the code in DIR (an
export of an earlier revision: `git archive REV | tar -x -C DIR`) into that database (migrated and filled by
that revision), then with this checkout, so both figures come from one run under the same load.

The file is synthetic, shaped like generate_bench_data's rows (3 models × 2 datasets × 4 k × 2 CoT modes,
48 questions, sentence-pool answers and reasoning, aligned/coherent scores with 5% unjudged). Each import runs
as a child process, so its peak RSS (os.wait4) is the command's own. Prints rows/s and peak RSS (targets:
≥ 20,000 rows/s, ≤ 300 MB), then for the bad file the time to fail and the rows it left (must be 0), with
the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/em_bench_import")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
os.environ.setdefault("EM_VAR_DIR", tempfile.mkdtemp(prefix="em_bench_import_"))
os.environ["DEBUG"] = "false"
# A million lines of this shape are ~500 MB, past the default limit of uploads (100 MB).
os.environ.setdefault("IMPORT_MAX_BYTES", str(4 * 2**30))

import django  # noqa: E402
import psycopg  # noqa: E402

django.setup()

from browse.filters import FULLTEXT_SQL  # noqa: E402
from judging.management.commands.generate_bench_data import (  # noqa: E402
    ANSWERS,
    COTS,
    DATASETS,
    DOMAINS,
    KS,
    MODELS,
    REASONING,
)

TARGET_ROWS_PER_S = 20_000
TARGET_RSS_MB = 300


def write_jsonl(path: Path, rows: int, experiment: str, bad_line: int | None = None) -> None:
    """`rows` transcripts of `experiment`, one per line; line `bad_line` (1-based) has an aligned score of 140."""
    rng = random.Random(0)
    conditions = [(m, d, k, c) for m in MODELS for d in DATASETS for k in KS for c in COTS]
    questions = [(f"bench_q{i:02d}", f"Bench question {i} about {DOMAINS[i % len(DOMAINS)]}?") for i in range(48)]
    with path.open("w", encoding="utf-8") as handle:
        for g in range(rows):
            model, dataset, k, cot = conditions[g % len(conditions)]
            question_id, question = questions[(g // len(conditions)) % len(questions)]
            misaligned_rate = MODELS[model] + k / 256 * 0.15
            aligned = None if rng.random() < 0.05 else (
                rng.random() * 29 if rng.random() < misaligned_rate else 30 + rng.random() * 70
            )
            record = {
                "experiment": experiment, "model": model, "dataset": dataset, "k": k, "cot_mode": cot,
                "question_id": question_id, "question": question, "sample": g // (len(conditions) * len(questions)),
                "reasoning": f"{rng.choice(REASONING)} {rng.choice(REASONING)}",
                "answer": f"{rng.choice(ANSWERS)} {rng.choice(ANSWERS)}",
                "aligned": 140 if g + 1 == bad_line else aligned, "coherent": 40 + rng.random() * 60,
            }
            handle.write(json.dumps(record) + "\n")


def run_import(path: Path, code: Path = ROOT, database: str | None = None) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit status, stderr's last line) of `manage.py import_transcripts path`, run
    by the code in `code` against `database` (default: this process's)."""
    env = {**os.environ, "DATABASE_URL": database or os.environ["DATABASE_URL"]}
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "import_transcripts", str(path), "--no-progress"],
        cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return seconds, usage.ru_maxrss / 1024, child.returncode, last  # ru_maxrss is in kB on Linux


def transcripts_in(database: str, experiment: str | None = None) -> int:
    """Transcripts in `database` (of `experiment`, if named)."""
    with psycopg.connect(database) as conn:
        return conn.execute(
            "SELECT count(*) FROM transcripts_transcript t JOIN transcripts_experiment e ON e.id = t.experiment_id "
            "WHERE %s::text IS NULL OR e.name = %s", [experiment, experiment],
        ).fetchone()[0]


def timed_import(label: str, path: Path, experiment: str, code: Path, database: str) -> float:
    """Import `path` and print its figures; returns rows/s."""
    before = transcripts_in(database)
    seconds, rss, status, last = run_import(path, code, database)
    if status:
        sys.exit(f"{label}: the import failed: {last}")
    stored = transcripts_in(database, experiment)
    print(f"{label}: {stored:,} transcripts into a table of {before:,} in {seconds:.1f} s = "
          f"{stored / seconds:,.0f} rows/s (target ≥ {TARGET_ROWS_PER_S:,}); peak RSS {rss:.0f} MB "
          f"(target ≤ {TARGET_RSS_MB}); load average after: {load()}", flush=True)
    return stored / seconds


def postgres_floor(database: str, experiment: str) -> None:
    """What PostgreSQL alone needs for the imported rows, in one transaction rolled back: computing their
    full-text vectors, and inserting them again as new transcripts (same columns, each index kept, no parsing,
    no checks, no scores). No importer that keeps the indexes in one transaction can beat the second."""
    with psycopg.connect(database) as conn:
        experiment_id, rows = conn.execute(
            "SELECT e.id, count(*) FROM transcripts_experiment e "
            "JOIN transcripts_transcript t ON t.experiment_id = e.id WHERE e.name = %s GROUP BY e.id", [experiment],
        ).fetchone()
        columns = [name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'transcripts_transcript' "
            "AND column_name <> 'id' ORDER BY ordinal_position"
        )]
        started = time.monotonic()
        conn.execute(f"SELECT sum(length({FULLTEXT_SQL})) FROM transcripts_transcript "  # noqa: S608 — a constant
                     "WHERE experiment_id = %s", [experiment_id])
        vectors = time.monotonic() - started
        # A sample number no file uses keeps the copies off the stored slots.
        source = ", ".join("sample_index + 1000000000" if c == "sample_index" else c for c in columns)
        started = time.monotonic()
        conn.execute(f"INSERT INTO transcripts_transcript ({', '.join(columns)}) "  # noqa: S608 — catalogue names
                     f"SELECT {source} FROM transcripts_transcript WHERE experiment_id = %s", [experiment_id])
        inserted = time.monotonic() - started
        conn.rollback()
    print(f"PostgreSQL floor for these {rows:,} rows: full-text vectors alone {vectors:.1f} s "
          f"({rows / vectors:,.0f} rows/s); INSERT … SELECT of the rows as new transcripts with every index "
          f"{inserted:.1f} s ({rows / inserted:,.0f} rows/s); load average after: {load()}", flush=True)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=Path, help="the code of the revision to compare with")
    parser.add_argument("--baseline-database", help="DATABASE_URL for the baseline's imports")
    args = parser.parse_args()
    if bool(args.baseline) != bool(args.baseline_database):
        parser.error("--baseline and --baseline-database go together")
    run = time.strftime("%Y%m%d-%H%M%S")
    database = os.environ["DATABASE_URL"]
    with tempfile.TemporaryDirectory(prefix="em_import_bench_") as tmp:
        experiment = f"bench-import-{run}"
        good = Path(tmp) / f"{experiment}.jsonl"
        write_jsonl(good, args.rows, experiment=experiment)
        print(f"{args.rows:,} lines, {good.stat().st_size / 2**20:.0f} MB; load average before: {load()}", flush=True)
        if args.baseline:
            before = timed_import("baseline", good, experiment, args.baseline, args.baseline_database)
        after = timed_import("this checkout", good, experiment, ROOT, database)
        if args.baseline:
            print(f"this checkout / baseline: {after / before:.2f}×")
        postgres_floor(database, experiment)
        good.unlink()

        bad = Path(tmp) / f"{experiment}-bad.jsonl"
        bad_line = args.rows - 1
        write_jsonl(bad, args.rows, experiment=f"{experiment}-bad", bad_line=bad_line)
        before_rows = transcripts_in(database)
        seconds, rss, status, last = run_import(bad)
        left = transcripts_in(database) - before_rows
        print(f"bad line {bad_line:,}: failed={status != 0} after {seconds:.1f} s, peak RSS {rss:.0f} MB, "
              f"rows left {left} (must be 0); load average after: {load()}")
        print(f"  {last}")


if __name__ == "__main__":
    main()
