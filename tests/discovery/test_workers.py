"""Embeddings and cluster runs in real Celery worker processes: a worker killed with kill -9 mid-run leaves
every vector written once (a database trigger counts the writes); a cluster run is computed by a worker,
reporting progress, and its clusters are named by the local LLM through the engine."""

import time

import numpy as np
import pytest
from django.db import connection
from sklearn.metrics import adjusted_rand_score

from discovery import clustering, embedding
from discovery.local_embedder import Embedder
from discovery.models import ClusterRun, TextVector
from tests.builders import embedding_endpoint, make_endpoint, planted_experiment
from tests.conftest import wait_until
from tests.discovery.planted import THEMES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER_ENV = {"SLOT_LEASE_SECONDS": "2", "GENERATION_BACKOFF_SECONDS": "0.05", "LOG_LEVEL": "WARNING"}

COUNT_WRITES = """
CREATE TABLE test_vector_writes (vector_id bigint NOT NULL, vector bytea);
CREATE FUNCTION test_count_vector_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_vector_writes VALUES (NEW.id, NEW.vector); RETURN NEW; END $$;
CREATE TRIGGER test_count_vector_write AFTER UPDATE ON discovery_textvector
  FOR EACH ROW WHEN (NEW.status = 'done') EXECUTE FUNCTION test_count_vector_write();
"""
DROP_COUNTER = """
DROP TRIGGER IF EXISTS test_count_vector_write ON discovery_textvector;
DROP FUNCTION IF EXISTS test_count_vector_write();
DROP TABLE IF EXISTS test_vector_writes;
"""


@pytest.fixture
def write_counter(transactional_db):
    with connection.cursor() as cursor:
        cursor.execute(DROP_COUNTER)
        cursor.execute(COUNT_WRITES)
    yield
    with connection.cursor() as cursor:
        cursor.execute(DROP_COUNTER)


def done() -> int:
    return TextVector.objects.filter(status="done").count()


def test_kill_9_mid_run_leaves_every_vector_written_once(write_counter, local_embedder_url, celery_worker_factory,
                                                         settings):
    # The killed worker's leases (the endpoint's timeout + 5 s) are what the second worker waits for.
    embedding_endpoint(local_embedder_url, max_concurrency=2, timeout_seconds=15)
    experiment, _ = planted_experiment(THEMES)  # 40 transcripts: 80 distinct texts (reasoning and answer)
    first = celery_worker_factory(concurrency=4, env=WORKER_ENV)
    assert embedding.enqueue(experiment.transcripts.all()) == 80  # dispatched on commit, to the worker
    wait_until(lambda: done() >= 16, timeout=180, message="16 vectors done")
    first.kill9()
    assert done() < 80, "the kill should come mid-run"
    second = celery_worker_factory(concurrency=4, env=WORKER_ENV)
    deadline = time.monotonic() + 300
    while done() < 80 and time.monotonic() < deadline:
        embedding.reconcile()  # what beat does every RECONCILE_EVERY seconds: expired leases come back
        time.sleep(1)
    assert second.proc.poll() is None
    assert done() == 80
    with connection.cursor() as cursor:
        cursor.execute("SELECT vector_id, count(*) FROM test_vector_writes GROUP BY vector_id")
        writes = dict(cursor.fetchall())
    assert len(writes) == 80 and set(writes.values()) == {1}, "a vector was written twice"
    # And each is its own text's vector: recomputed here with the same model, the same numbers.
    model = Embedder(settings.VAR_DIR / "models")
    rows = list(TextVector.objects.prefetch_related("texts__transcript")[:12])
    for row in rows:
        link = row.texts.all()[0]
        expected = model.embed([getattr(link.transcript, link.kind)])[0][0]
        assert float(np.dot(row.array(), expected)) > 0.999


def test_a_cluster_run_is_computed_in_a_worker_and_named_by_the_local_llm(
        local_embedder_url, local_llm_url, celery_worker_factory, transactional_db):
    from discovery import tasks

    endpoint = embedding_endpoint(local_embedder_url)
    # Four naming prompts of eight sampled reasonings each: seconds on an idle machine, minutes when a loaded
    # one starves the llama.cpp server (a request timed out at 120 s at load 10); speed is the bench's matter.
    namer = make_endpoint(local_llm_url, name="local", model="smollm2", max_concurrency=1, timeout_seconds=300)
    experiment, truth = planted_experiment(THEMES)
    embedding.enqueue(experiment.transcripts.all())
    celery_worker_factory(concurrency=4, env=WORKER_ENV)
    wait_until(lambda: done() == 80, timeout=240, message="80 vectors done")
    run = ClusterRun.objects.create(endpoint=endpoint, algorithm="kmeans", n_clusters=4, seed=0,
                                    transcript_ids=sorted(truth), naming_endpoint=namer)
    tasks.cluster.delay(run.pk)
    seen = set()

    def finished() -> bool:
        run.refresh_from_db()
        seen.add(run.progress)
        return run.status in ("done", "failed")

    wait_until(finished, timeout=900, interval=0.05, message="the run to finish")
    assert run.status == "done", run.message
    assert any(0 < p < 100 for p in seen), f"no progress reported between start and end: {seen}"
    members = dict(run.members.values_list("transcript_id", "label"))
    ari = adjusted_rand_score([truth[t] for t in members], list(members.values()))
    assert ari >= 0.8
    clusters = list(run.clusters.all())
    assert len(clusters) == 4 and all(c.name for c in clusters), [(c.name, c.description) for c in clusters]
    # Reproducible: the same vectors, seed and parameters give the worker's clusters here too.
    from discovery import search

    again = search.load(endpoint, transcript_ids=run.transcript_ids)
    labels = clustering.labels_for(again.vectors, algorithm="kmeans", seed=0, n_clusters=4)
    assert dict(zip(again.ids.tolist(), labels.tolist(), strict=True)) == members
