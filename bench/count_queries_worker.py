"""A `celery worker` that also counts the SQL statements it runs, for bench/concurrency.py's queries per slot.
Every new database connection gets an execute wrapper; the total is written to BENCH_QUERY_COUNT_FILE twice a
second. Usage: python bench/count_queries_worker.py <celery worker arguments>."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")

import django  # noqa: E402

django.setup()

from django.db.backends.signals import connection_created  # noqa: E402

from em_site.celery import app  # noqa: E402

counter = itertools.count()
seen = [0]


def count(execute, sql, params, many, context):
    seen[0] = next(counter)
    return execute(sql, params, many, context)


def install(sender, connection, **kwargs):
    if count not in connection.execute_wrappers:  # a pooled or reopened connection keeps its wrapper
        connection.execute_wrappers.append(count)


def report(path: Path) -> None:
    while True:
        path.write_text(str(seen[0]))
        time.sleep(0.5)


connection_created.connect(install)
threading.Thread(target=report, args=(Path(os.environ["BENCH_QUERY_COUNT_FILE"]),), daemon=True).start()
app.worker_main(["worker", *sys.argv[1:]])
