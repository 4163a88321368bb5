"""Generation throughput with one worker process: 5,000 slots against a stub endpoint that answers after
1 s, `max_concurrency: 500`. Ideal: 5,000 / 500 × 1 s = 10 s. Target: ≤ 1.25× ideal, the stub's peak in
flight reaching and never exceeding 500. Prints SQL statements per slot (counted in the worker).

    createdb -h 127.0.0.1 -U postgres em_bench_gen
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench_gen CELERY_BROKER_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/concurrency.py

Runs migrate, then the real path: an operator's endpoint (transcripts.endpoints.save_endpoint), define_experiment
+ launch from this process, one real `celery worker -P threads` process (DATABASE_POOL_SIZE connections shared
by its threads) claiming slots under the endpoint's limit in the database.
Wall time runs from launch to the last slot done (the worker is started and warm before).
Set BENCH_SLOTS / BENCH_CONCURRENCY / BENCH_LATENCY to vary it.
"""

from __future__ import annotations

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
POOL = os.environ.get("BENCH_POOL_SIZE", "40")
LATENCY = float(os.environ.get("BENCH_LATENCY", "1.0"))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from em_site.celery import app  # noqa: E402
from judging.models import JudgeScore  # noqa: E402
from judging.results.rubrics import experiment_judging  # noqa: E402
from tests.stub_openai import Reply, StubOpenAI, completion  # noqa: E402
from transcripts.endpoints import save_endpoint  # noqa: E402
from transcripts.experiments.actions import launch  # noqa: E402
from transcripts.experiments.planning import define_experiment  # noqa: E402
from transcripts.models import (  # noqa: E402
    Dataset,
    Endpoint,
    Example,
    Experiment,
    Question,
    QuestionSet,
    Transcript,
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


def main() -> None:
    call_command("migrate", verbosity=0)
    setup_data()
    Endpoint.objects.filter(name="bench-stub").delete()
    worker = None
    count_file = Path(tempfile.mkdtemp(prefix="em_bench_q_")) / "queries"
    with StubOpenAI(lambda r, n: Reply(body=completion(f"answer {n}"), delay=LATENCY)) as stub:
        save_endpoint(name="bench-stub", base_url=stub.base_url, model="stub", max_concurrency=CONCURRENCY,
                      timeout_seconds=30)
        spec = {
            "name": "bench-concurrency", "datasets": ["bench"], "questions": "bench", "k": [2],
            "samples": SLOTS // 50, "max_tokens": 16, "endpoints": ["bench-stub"],
        }
        experiment = define_experiment(spec)
        # Measure generation alone: this database has no judge endpoint loaded, so nothing is judged.
        assert experiment_judging(experiment).pk is None, "a judge endpoint is loaded in the bench database"
        total = experiment.transcripts.count()
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "count_queries_worker.py"), "-P", "threads",
             "-c", str(CONCURRENCY + 14), "--without-gossip", "--without-mingle", "-l", "WARNING"],
            cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING", "DATABASE_POOL_SIZE": POOL,
                           "BENCH_QUERY_COUNT_FILE": str(count_file)},
        )
        try:
            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5):  # the clock starts once the worker answers
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not start")
            time.sleep(1)
            queries_before = int(count_file.read_text() or 0)
            started = time.monotonic()
            launch(experiment)
            while Transcript.objects.filter(experiment=experiment, status="done").count() < total:
                time.sleep(0.05)
            wall = time.monotonic() - started
            time.sleep(1)  # the counter file is written twice a second
            queries = int(count_file.read_text() or 0) - queries_before
        finally:
            worker.kill()  # a benchmark worker: nothing to finish
            worker.wait(30)
    ideal = total / CONCURRENCY * LATENCY
    print(f"slots={total} max_concurrency={CONCURRENCY} latency={LATENCY:.1f}s worker=1 process (-P threads)")
    print(f"peak requests in flight at the stub: {stub.max_in_flight}")
    print(f"wall time: {wall:.2f} s   ideal: {ideal:.2f} s   ratio: {wall / ideal:.3f}  (target ≤ 1.25)")
    print(f"SQL statements in the worker: {queries}  ({queries / total:.1f} per slot)")


if __name__ == "__main__":
    main()
