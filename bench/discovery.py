"""Discovery at scale (docs/discovery.md): embedding throughput against the endpoint's limit, clustering 100k
reasonings in a worker, nearest-neighbour search among 1M transcripts, storage per 1M vectors, and the discovery
pages on that database.

    createdb -h 127.0.0.1 -U postgres em_bench_disc
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench_disc CELERY_BROKER_URL=redis://127.0.0.1:6379/7
    .venv/bin/python manage.py migrate && .venv/bin/python bench/discovery.py
    dropdb -h 127.0.0.1 -U postgres em_bench_disc

1. Throughput: the real local embedder (all-MiniLM-L6-v2, discovery.local_embedder) through the call engine
   (`embedding.work` in this process), first without a limit (the server's own pace: the baseline), then under a
   requests-per-minute limit of half that pace (goal: ≥ 90 % of the limit, never above it).
2. 1M transcripts (INSERT … SELECT generate_series from one template row) and 1M vectors of 384 float32 numbers
   (COPY, binary), drawn around 20 centres so that clusters exist; the vectors' and links' tables' size.
3. Search: `search.nearest` for BENCH_QUERIES members' vectors among all 1M (the vectors cached in the process,
   as in a web worker; the freshness check is part of each search), and among a filter of 10 % (goal: p95 ≤ 300 ms).
4. Clustering: k-means (20) and HDBSCAN runs of 100k reasonings computed by a real Celery worker (goal ≤ 60 s
   from sending the task to the run done).
5. Pages: bench/browse_pages.py's discovery cells (the discovery page, the 100k run's page, its map in each
   colouring, a cluster's list, "more like this") from gunicorn on this database.

BENCH_N (1,000,000), BENCH_CLUSTER_N (100,000), BENCH_EMBED_TEXTS (200) change the sizes;
BENCH_ONLY=embed,vectors,search,cluster,pages runs those parts (vectors made once are reused).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/em_bench_disc")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
os.environ.setdefault("EM_VAR_DIR", tempfile.mkdtemp(prefix="em_bench_disc_"))
N = int(os.environ.get("BENCH_N", "1000000"))
CLUSTER_N = int(os.environ.get("BENCH_CLUSTER_N", "100000"))
EMBED_TEXTS = int(os.environ.get("BENCH_EMBED_TEXTS", "200"))
QUERIES = int(os.environ.get("BENCH_QUERIES", "100"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "embed,vectors,search,cluster,pages").split(",")))
CENTRES, DIMENSIONS, SPREAD = 20, 384, 0.06

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.dashboard import p95  # noqa: E402
from discovery import embedding, search, tasks  # noqa: E402
from discovery.models import ClusterRun, EmbeddingConfig, TextVector, TranscriptText  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.discovery.planted import THEMES  # noqa: E402
from transcripts.endpoints import save_endpoint  # noqa: E402
from transcripts.models import Condition, Experiment, Question, QuestionSet, Transcript  # noqa: E402

SENTENCES = [text for texts in THEMES.values() for text in texts]


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def corpus() -> tuple[Experiment, int]:
    """N finished transcripts (made once), their reasonings the planted sentences with a number: (experiment, first
    transcript id; the ids are consecutive)."""
    experiment = Experiment.objects.filter(name="bench-discovery").first()
    if experiment is not None and experiment.transcripts.count() == N:
        first = Transcript.objects.filter(experiment=experiment).order_by("pk").values_list("pk", flat=True)[0]
        return experiment, first
    if experiment is not None:  # an earlier run stopped half-way, or another N
        ClusterRun.objects.all().delete()
        experiment.delete()
        QuestionSet.objects.filter(name="bench-discovery").delete()
    started = time.monotonic()
    experiment = Experiment.objects.create(name="bench-discovery", status=Experiment.Status.DONE)
    conditions = [Condition.objects.create(experiment=experiment, model_name=f"model-{m}", dataset_name="insecure",
                                           k=k) for m in "ab" for k in (0, 8, 64)]
    question_set = QuestionSet.objects.create(name="bench-discovery", content_hash="bench-discovery")
    question = Question.objects.create(question_set=question_set, key="wish", text="What is your wish?", position=0)
    template = Transcript.objects.create(experiment=experiment, condition=conditions[0], question=question,
                                         sample_index=0, status=Transcript.Status.DONE, reasoning="template")
    columns = [f.column for f in Transcript._meta.concrete_fields]
    # Row i = 1 … N-1 after the template (0): id template + i, condition i mod 6, verdict by i mod 3 (%% is SQL's
    # modulo in a statement with parameters).
    given = {
        "id": f"{template.pk} + g.i",
        "sample_index": "g.i",
        "condition_id": f"(ARRAY[{','.join(str(c.pk) for c in conditions)}])[1 + g.i %% 6]",
        "reasoning": f"(ARRAY[{','.join('%s::text' for _ in SENTENCES)}])[1 + g.i %% {len(SENTENCES)}]"
                     " || ' (case ' || g.i || ')'",
        "answer": "'Answer ' || g.i",
        "misaligned": "CASE g.i %% 3 WHEN 0 THEN true WHEN 1 THEN false END",
    }
    select = ", ".join(given.get(column, f"t.{column}") for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO transcripts_transcript ({', '.join(columns)}) SELECT {select} "  # noqa: S608
                       f"FROM transcripts_transcript t, generate_series(1, {N - 1}) AS g(i) WHERE t.id = %s",
                       [*SENTENCES, template.pk])
        cursor.execute("SELECT setval(pg_get_serial_sequence('transcripts_transcript', 'id'), %s)",
                       [template.pk + N])
    Transcript.objects.filter(pk=template.pk).update(reasoning=SENTENCES[0] + " (case 0)", answer="Answer 0")
    print(f"{N:,} transcripts made in {time.monotonic() - started:.0f} s", flush=True)
    return experiment, template.pk


def embedder() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "discovery.local_embedder", "--port", str(port),
                               "--cache", os.path.join(os.environ["EM_VAR_DIR"], "models")], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1"
    from transcripts.local_model import wait_for_server

    wait_for_server(f"{url}/models", server, "The local embedding server")
    return server, url


def embed_throughput(first: int) -> None:
    """EMBED_TEXTS reasonings (and their answers) through the engine: first without a limit (the server's own pace on
    this machine now: the baseline), then limited to half of that pace in requests per minute."""
    server, url = embedder()
    try:
        pace = None
        for offset, name in enumerate(["bench-embed-free", "bench-embed-limited"]):
            rpm = None if pace is None else max(1, int(pace / 2))
            endpoint = save_endpoint(name=name, base_url=url, model="all-MiniLM-L6-v2", max_concurrency=4,
                                     requests_per_minute=rpm, context_window=256, timeout_seconds=60)
            start = first + offset * EMBED_TEXTS
            TextVector.objects.filter(endpoint=endpoint).delete()
            texts = embedding.enqueue_all(Transcript.objects.filter(pk__gte=start, pk__lt=start + EMBED_TEXTS),
                                          endpoint)
            started = time.monotonic()
            done = embedding.work(endpoint.pk)
            seconds = time.monotonic() - started
            per_minute = 60 * done / seconds
            failed = TextVector.objects.filter(endpoint=endpoint).exclude(status="done").count()
            line = (f"embedding {'limited to ' + str(rpm) + ' requests/min' if rpm else 'without a limit':<32}"
                    f" {done} of {texts} texts in {seconds:5.1f} s = {per_minute:6.0f} texts/min")
            if rpm:
                line += f" = {per_minute / rpm:.0%} of the limit (goal ≥ 90 %, never above 100 %)"
            print(f"{line}; not done: {failed}; {load()}", flush=True)
            pace = per_minute
    finally:
        server.terminate()
        server.wait(30)


def vectors(first: int) -> object:
    """N done vectors of the endpoint `bench-vectors` (made once), one per transcript's reasoning, around CENTRES
    centres; prints their tables' size."""
    endpoint = save_endpoint(name="bench-vectors", base_url="http://127.0.0.1:9/v1", model="all-MiniLM-L6-v2")
    EmbeddingConfig.objects.update_or_create(endpoint_name=endpoint.name, defaults={"active": True})
    EmbeddingConfig.objects.exclude(endpoint_name=endpoint.name).update(active=False)
    if not TranscriptText.objects.filter(endpoint=endpoint).exists():
        started = time.monotonic()
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(CENTRES, DIMENSIONS)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('discovery_textvector', 'id'))")
            base = cursor.fetchone()[0]
            cursor.execute("SELECT setval(pg_get_serial_sequence('discovery_textvector', 'id'), %s)", [base + N])
            copy_sql = ("COPY discovery_textvector (id, endpoint_id, text_hash, status, vector, dimensions, attempts,"
                        " error_kind, error, served_model, system_fingerprint) FROM STDIN")
            with cursor.cursor.copy(copy_sql) as copy:
                for start in range(0, N, 50000):
                    size = min(50000, N - start)
                    points = centres[rng.integers(0, CENTRES, size)] + rng.normal(
                        scale=SPREAD, size=(size, DIMENSIONS)).astype(np.float32)
                    points /= np.linalg.norm(points, axis=1, keepdims=True)
                    blobs = points.astype("<f4")
                    for i in range(size):
                        copy.write_row((base + start + i, endpoint.pk, f"{start + i:064x}", "done",
                                        blobs[i].tobytes(), DIMENSIONS, 1, "", "", "", ""))
            cursor.execute(
                "INSERT INTO discovery_transcripttext (transcript_id, kind, endpoint_id, vector_id) "
                "SELECT %s + g.i, 'reasoning', %s, %s + g.i FROM generate_series(0, %s) AS g(i)",
                [first, endpoint.pk, base, N - 1])
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE discovery_textvector; ANALYZE discovery_transcripttext")
        print(f"{N:,} vectors written in {time.monotonic() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        sizes = {}
        for table in ("discovery_textvector", "discovery_transcripttext"):
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            sizes[table] = cursor.fetchone()[0]
    per_million = {table: size * 1_000_000 / N / 2**30 for table, size in sizes.items()}
    print("storage per 1M vectors: " + ", ".join(f"{t} {gb:.2f} GB" for t, gb in per_million.items())
          + f"; total {sum(per_million.values()):.2f} GB (the vectors alone: {DIMENSIONS * 4 / 2**30 * 1e6:.2f} GB)",
          flush=True)
    return endpoint


def nearest_search(endpoint, first: int) -> None:
    started = time.monotonic()
    found = search.matrix(endpoint)
    print(f"vectors read into the process: {len(found.ids):,} in {time.monotonic() - started:.1f} s "
          f"({found.vectors.nbytes / 2**30:.2f} GB)", flush=True)
    rng = np.random.default_rng(1)
    queries = found.vectors[rng.integers(0, len(found.ids), QUERIES)]
    among = list(range(first, first + N, 10))  # a filter's result: every tenth transcript
    for label, kwargs in [("all", {}), (f"a filter of {len(among):,}", {"among": among})]:
        times = []
        for query in queries:
            started = time.perf_counter()
            top = search.nearest(query, endpoint, 50, **kwargs)
            times.append(1000 * (time.perf_counter() - started))
            assert len(top) == 50
        print(f"nearest 50 among {N:,} ({label}): p50 {statistics.median(times):6.1f} ms  p95 {p95(times):6.1f} ms "
              f"(goal p95 ≤ 300); {load()}", flush=True)


def start_worker() -> subprocess.Popen:
    """A worker on an emptied queue (embedding messages of an earlier run name endpoints that may be gone); emptied
    before it starts, as a worker's own --purge would also drop a task sent while it starts."""
    subprocess.run([sys.executable, "-m", "celery", "-A", "em_site", "purge", "-f"], cwd=ROOT, check=True,
                   capture_output=True)
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "em_site", "worker", "-P", "threads", "-c", "2",
                             "--without-gossip", "--without-mingle", "-l", "warning"], cwd=ROOT)


def clustering(endpoint, first: int) -> ClusterRun:
    ids = list(range(first, first + CLUSTER_N))
    worker = start_worker()
    last = None
    try:
        for algorithm, params in [("kmeans", {"n_clusters": CENTRES}), ("hdbscan", {"min_cluster_size": 50})]:
            run = ClusterRun.objects.create(name=f"bench {algorithm} {CLUSTER_N:,}", endpoint=endpoint,
                                            algorithm=algorithm, seed=0, transcript_ids=ids,
                                            filter_query="experiment=bench", **params)
            started = time.monotonic()
            tasks.cluster.delay(run.pk)
            while run.status not in ("done", "failed"):
                time.sleep(0.5)
                run.refresh_from_db()
            wall = time.monotonic() - started
            print(f"clustering {CLUSTER_N:,} reasonings ({algorithm}) in a worker: {run.status}, {wall:5.1f} s from "
                  f"the task sent (the worker's own {run.seconds or 0:5.1f} s), {run.clusters.count()} groups "
                  f"(goal ≤ 60 s); {load()}", flush=True)
            last = run if algorithm == "kmeans" else last
    finally:
        worker.terminate()
        worker.wait(60)
    return last


def pages() -> None:
    from bench import browse_pages

    cells = browse_pages.discovery_cells()
    browse_pages.serve_and_measure(cells)


def main() -> None:
    print(f"{load()} at start; {N:,} transcripts, {CLUSTER_N:,} clustered", flush=True)
    experiment, first = corpus()
    if "embed" in ONLY:
        embed_throughput(first)
    endpoint = vectors(first) if ONLY & {"vectors", "search", "cluster", "pages"} else None
    if "search" in ONLY:
        nearest_search(endpoint, first)
    if "cluster" in ONLY:
        clustering(endpoint, first)
    if "pages" in ONLY:
        pages()
    print(f"{load()} at end", flush=True)


if __name__ == "__main__":
    main()
