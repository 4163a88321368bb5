"""Generation throughput of the call engine: SLOTS slots against a stub endpoint that answers after 1 s,
`max_concurrency: CONCURRENCY`, WORKERS worker processes. Ideal: SLOTS / CONCURRENCY × 1 s. Targets
(docs/benchmarks.md): 5,000 at 500 in flight in one process ≤ 1.25× ideal, the stub's peak in flight ≥ 475
and never above 500; 500 at 50 ≤ 1.15×; 20,000 at 2,000 across two processes ≤ 1.5×; ≤ 3 SQL statements per
slot (counted in the workers). Also reported: the workers' CPU time per slot, which the machine's load does
not change.

    createdb -h 127.0.0.1 -U postgres em_bench_gen
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench_gen CELERY_BROKER_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/concurrency.py
    BENCH_SLOTS=20000 BENCH_CONCURRENCY=2000 BENCH_WORKERS=2 .venv/bin/python bench/concurrency.py

First the stub alone, in the same run: SLOTS requests from one asyncio client at CONCURRENCY in flight, the
baseline of what this machine and stub can do. Then the real path: migrate, an operator's endpoint
(transcripts.endpoints.save_endpoint), define_experiment + launch from this process, WORKERS real `celery
worker` processes (each keeps up to CONCURRENCY / WORKERS requests in flight: ENGINE_MAX_IN_FLIGHT) claiming
slots under the endpoint's limit in the database. Wall time runs from launch to the last slot done (the
workers are started and warm before).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/em_bench_gen")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
os.environ.setdefault("EM_VAR_DIR", tempfile.mkdtemp(prefix="em_bench_gen_"))
SLOTS = int(os.environ.get("BENCH_SLOTS", "5000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "500"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
LATENCY = float(os.environ.get("BENCH_LATENCY", "1.0"))

import django  # noqa: E402

django.setup()

import httpx2  # noqa: E402
import openai  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from openai.types.chat import ChatCompletion  # noqa: E402

from em_site.celery import app  # noqa: E402
from judging.models import JudgeScore  # noqa: E402
from judging.results.rubrics import experiment_judging  # noqa: E402
from tests.stub_openai import Reply, StubOpenAI, completion  # noqa: E402
from transcripts import engine  # noqa: E402
from transcripts.endpoints import save_endpoint  # noqa: E402
from transcripts.engine.calls import new_client  # noqa: E402
from transcripts.experiments.actions import launch  # noqa: E402
from transcripts.experiments.planning import define_experiment  # noqa: E402
from transcripts.models import (  # noqa: E402
    CategoryCount,
    Dataset,
    Endpoint,
    Example,
    Experiment,
    Question,
    QuestionSet,
    Transcript,
    VerdictCount,
    content_hash,
)


def setup_data() -> None:
    JudgeScore.objects.all().delete()
    Experiment.objects.filter(name="bench-concurrency").delete()
    if not Dataset.objects.filter(name="bench").exists():
        rows = [[{"role": "user", "content": f"u{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(10)]
        dataset = Dataset.objects.create(name="bench", content_hash=content_hash(rows), n_examples=10)
        Example.objects.bulk_create(Example(dataset=dataset, position=i, messages=m) for i, m in enumerate(rows))
    if not QuestionSet.objects.filter(name="bench").exists():
        question_set = QuestionSet.objects.create(name="bench", content_hash="bench")
        Question.objects.bulk_create(
            Question(question_set=question_set, key=f"q{i}", text=f"Q{i}?", paraphrases=[f"Q{i}?"], position=i)
            for i in range(50)
        )


def vacuum() -> None:
    """VACUUM (ANALYZE) the tables a run writes. Without it the figures depend on the database's history: this
    machine's PostgreSQL runs without autovacuum (the tests' configuration), so each run left ~20,000 dead
    transcript versions behind, and after five runs a claim of 62 rows scanned 20,000 buffers (11.5 ms instead
    of 2.8 ms) on a planner that still thought the table empty."""
    with connection.cursor() as cursor:
        for model in (Transcript, Experiment, JudgeScore, VerdictCount, CategoryCount):
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")


def stub_alone(base_url: str) -> float:
    """SLOTS chat requests at CONCURRENCY in flight from asyncio `openai` clients, one per
    engine.CONNECTIONS_PER_CLIENT lanes as the engine has them: the stub's own wall time."""
    async def run() -> float:
        tls = httpx2.create_ssl_context()
        clients = [
            new_client(base_url, "x", 30, CONCURRENCY, tls)
            for _ in range(math.ceil(CONCURRENCY / engine.CONNECTIONS_PER_CLIENT))
        ]
        queue = iter(range(SLOTS))

        async def lane(client: openai.AsyncOpenAI) -> None:
            for n in queue:  # the request and reply handling of the engine's Calls._send, without the engine
                response = await client.post("/chat/completions", cast_to=httpx2.Response, body={
                    "model": "stub", "messages": [{"role": "user", "content": f"Q{n}"}]})
                ChatCompletion.model_validate(response.json())

        started = time.monotonic()
        await asyncio.gather(*(lane(clients[i % len(clients)]) for i in range(CONCURRENCY)))
        return time.monotonic() - started

    return asyncio.run(run())


def start_workers(count_files: list[Path]) -> list[subprocess.Popen]:
    per_process = math.ceil(CONCURRENCY / WORKERS)
    return [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "count_queries_worker.py"), "-P", "threads", "-c", "4",
             "--without-gossip", "--without-mingle", "-l", "WARNING", "-n", f"bench{i}@%h"],
            cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING", "ENGINE_MAX_IN_FLIGHT": str(per_process),
                           "BENCH_QUERY_COUNT_FILE": str(path)},
        )
        for i, path in enumerate(count_files)
    ]


def queries(count_files: list[Path]) -> int:
    return sum(int(path.read_text() or 0) for path in count_files)


def cpu_seconds(workers: list[subprocess.Popen]) -> float:
    """CPU time (user + system) the worker processes used so far: what a slot costs whatever the machine's
    load (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for worker in workers:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main() -> None:
    call_command("migrate", verbosity=0)
    setup_data()
    Endpoint.objects.filter(name="bench-stub").delete()
    directory = Path(tempfile.mkdtemp(prefix="em_bench_q_"))
    count_files = [directory / f"queries-{i}" for i in range(WORKERS)]
    load = os.getloadavg()[0]
    with StubOpenAI(lambda r, n: Reply(body=completion(f"answer {n}"), delay=LATENCY), asynchronous=True) as stub:
        alone = stub_alone(stub.base_url)
        stub_peak = stub.max_in_flight
        stub.max_in_flight = 0
        save_endpoint(name="bench-stub", base_url=stub.base_url, model="stub", max_concurrency=CONCURRENCY,
                      timeout_seconds=30)
        spec = {
            "name": "bench-concurrency", "datasets": ["bench"], "questions": "bench", "k": [2],
            "samples": SLOTS // 50, "max_tokens": 16, "endpoints": ["bench-stub"],
        }
        experiment = define_experiment(spec)
        vacuum()
        # Measure generation alone: this database has no judge endpoint loaded, so nothing is judged.
        assert experiment_judging(experiment).pk is None, "a judge endpoint is loaded in the bench database"
        total = experiment.transcripts.count()
        workers = start_workers(count_files)
        try:
            deadline = time.monotonic() + 60
            while len(app.control.ping(timeout=0.5)) < WORKERS:  # the clock starts once every worker answers
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not start")
            time.sleep(1)
            queries_before, cpu_before = queries(count_files), cpu_seconds(workers)
            started = time.monotonic()
            stub.times.clear()
            launch(experiment)
            while Transcript.objects.filter(experiment=experiment, status="done").count() < total:
                time.sleep(0.05)
            wall = time.monotonic() - started
            cpu = cpu_seconds(workers) - cpu_before
            time.sleep(1)  # the counter files are written twice a second
            counted = queries(count_files) - queries_before
        finally:
            for worker in workers:
                worker.kill()  # benchmark workers: nothing to finish
                worker.wait(30)
    ideal = total / CONCURRENCY * LATENCY
    print(f"slots={total} max_concurrency={CONCURRENCY} latency={LATENCY:.1f}s workers={WORKERS} "
          f"load average at start {load:.1f}")
    print(f"stub alone: {alone:.2f} s   ratio: {alone / ideal:.3f}   peak in flight {stub_peak}")
    print(f"peak requests in flight at the stub: {stub.max_in_flight}")
    print(f"wall time: {wall:.2f} s   ideal: {ideal:.2f} s   ratio: {wall / ideal:.3f}   "
          f"against the stub alone: {wall / alone:.3f}")
    print(f"SQL statements in the workers: {counted}  ({counted / total:.2f} per slot)")
    arrivals = sorted(stub.times)
    seconds = [sum(1 for a in arrivals if start <= a - arrivals[0] < start + 1) for start in range(math.ceil(wall))]
    print(f"requests started per second of the run: {seconds}")
    print(f"CPU time of the workers: {cpu:.1f} s  ({cpu / total * 1000:.2f} ms per slot; "
          f"{cpu / wall:.2f} cores over the run)")


if __name__ == "__main__":
    main()
