"""Planted structure: reasonings from four rationalisation themes, embedded by the real local model through the
call engine, come back as four clusters; a paraphrase of a theme finds that theme's members first."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from discovery import clustering, embedding, search
from discovery.models import ClusterRun, TextVector, TranscriptText
from tests.builders import embedding_endpoint, planted_experiment
from tests.discovery.planted import PARAPHRASES, THEMES

pytestmark = pytest.mark.slow


@pytest.fixture
def planted(db, local_embedder_url):
    endpoint = embedding_endpoint(local_embedder_url)
    experiment, truth = planted_experiment(THEMES)
    added = embedding.enqueue(experiment.transcripts.all())
    assert added == 80  # 40 reasonings + 40 answers, every text distinct
    assert embedding.work(endpoint.pk) == 80  # the engine's driver, in this thread
    return endpoint, experiment, truth


def test_every_text_gets_one_vector_through_the_engine(planted):
    endpoint, experiment, truth = planted
    vectors = TextVector.objects.filter(endpoint=endpoint)
    assert vectors.count() == 80
    assert set(vectors.values_list("status", flat=True)) == {"done"}
    assert set(vectors.values_list("dimensions", flat=True)) == {384}
    for vector in vectors[:5]:
        assert abs(np.linalg.norm(vector.array()) - 1) < 1e-4
    assert TranscriptText.objects.filter(endpoint=endpoint).count() == 80
    assert all(v.prompt_tokens for v in vectors)  # usage recorded, as for generation and judging
    # Enqueueing again adds nothing: one vector per (text, endpoint version).
    assert embedding.enqueue(experiment.transcripts.all()) == 0


def test_planted_themes_are_recovered_as_clusters(planted):
    endpoint, experiment, truth = planted
    found = search.load(endpoint, transcript_ids=list(truth))
    expected = [truth[int(t)] for t in found.ids]
    scores = {}
    for algorithm, params in [("kmeans", {"n_clusters": 4}), ("hdbscan", {"min_cluster_size": 5})]:
        labels = clustering.labels_for(found.vectors, algorithm=algorithm, seed=0, **params)
        scores[algorithm] = adjusted_rand_score(expected, labels)
    print(f"adjusted Rand index: {scores}")
    assert scores["kmeans"] >= 0.8
    # Reproducible: the same seed and parameters give the same labels.
    again = clustering.labels_for(found.vectors, algorithm="kmeans", seed=0, n_clusters=4)
    first = clustering.labels_for(found.vectors, algorithm="kmeans", seed=0, n_clusters=4)
    assert (again == first).all()


def test_a_run_in_the_database_recovers_them_too(planted):
    endpoint, experiment, truth = planted
    run = ClusterRun.objects.create(endpoint=endpoint, algorithm="kmeans", n_clusters=4, seed=0,
                                    transcript_ids=list(truth))
    clustering.compute(run.pk)
    run.refresh_from_db()
    assert run.status == "done" and run.progress == 100 and run.n_points == 40
    members = dict(run.members.values_list("transcript_id", "label"))
    assert adjusted_rand_score([truth[t] for t in members], list(members.values())) >= 0.8
    assert sorted(run.clusters.values_list("size", flat=True)) == sorted(
        np.bincount(list(members.values())).tolist())


def test_a_paraphrase_finds_its_theme_first(planted):
    endpoint, experiment, truth = planted
    precision = {}
    for theme, paraphrase in PARAPHRASES.items():
        query = embedding.embed_now(paraphrase, endpoint)
        top = search.nearest(query, endpoint, n=10)
        assert truth[top[0][0]] == theme
        precision[theme] = sum(truth[t] == theme for t, _ in top) / 10
    print(f"precision at 10: {precision}")
    assert np.mean(list(precision.values())) >= 0.8
