"""Discovery in a real browser (Debian's chromium through Playwright), on reasonings embedded by the real local
model: a researcher clusters an experiment, clicks a cluster on the map and gets exactly its transcripts, then
queues a cluster for blind annotation; the auditor of that queue never sees a cluster."""

import os
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from discovery import embedding
from discovery.models import Cluster, ClusterMember, ClusterRun
from judging.models import AnnotationQueue
from tests.builders import embedding_endpoint, planted_experiment, taxonomy
from tests.conftest import logged_in_page, set_celery_options
from tests.discovery.planted import THEMES

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLUSTER_NAME = "Orders are orders"  # as an LLM would name a cluster: researcher-only text


@pytest.fixture
def embedded(transactional_db, local_embedder_url):
    """The planted experiment's 40 reasonings (four themes), embedded through the call engine."""
    endpoint = embedding_endpoint(local_embedder_url)
    experiment, truth = planted_experiment(THEMES)
    embedding.enqueue(experiment.transcripts.all())
    assert embedding.work(endpoint.pk) == 80
    return experiment, truth


@pytest.fixture
def clusters_computed_in_the_server():
    """The run's Celery task runs where it is sent (the live server's thread), as a worker would run it."""
    set_celery_options(task_always_eager=True)
    yield
    set_celery_options(task_always_eager=False)


def shot(page, tmp_path, name: str) -> None:
    """A 1366×768 screenshot, kept with the test's files; EM_DOCS_IMG=docs/img writes the documentation's copy."""
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("EM_DOCS_IMG"):
        page.screenshot(path=str(Path(os.environ["EM_DOCS_IMG"]) / name))


def point_of_cluster(page, label: int) -> tuple[float, float]:
    """Page coordinates of the first map point of cluster `label`, from plotly's own axes."""
    return page.evaluate("""(label) => {
        const gd = document.getElementById('chart-cluster-map');
        const trace = gd._fullData.find(t => t.name.startsWith(label + ':'));
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(trace.x[0]), box.top + ya._offset + ya.l2p(trace.y[0])];
    }""", label)


def listed_ids(page) -> set[int]:
    return {int(pk) for pk in page.locator("#transcript-table a.detail-link").all_text_contents()}


def test_map_to_a_cluster_s_transcripts_to_a_blind_queue(chromium, live_server, alice, bob, embedded,
                                                         clusters_computed_in_the_server, tmp_path):
    experiment, truth = embedded
    page = logged_in_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/discovery/?filter=experiment={experiment.pk}")
    page.fill("#id_name", "planted themes")
    page.select_option("#id_algorithm", "kmeans")
    page.fill("#id_n_clusters", "4")
    with page.expect_navigation():
        page.click("#run-form button[type=submit]")
    page.wait_for_selector("#run-status:text('done')")
    run = ClusterRun.objects.get(name="planted themes")
    assert run.n_points == 40 and run.clusters.count() == 4

    # The map: one trace per cluster; clicking a point opens that cluster's transcripts.
    page.wait_for_selector("#chart-cluster-map[data-rendered='true']", timeout=20000)
    page.locator("#chart-cluster-map").scroll_into_view_if_needed()
    shot(page, tmp_path, "discovery-map.png")
    label = int(ClusterMember.objects.filter(run=run).order_by("pk").values_list("label", flat=True).first())
    x, y = point_of_cluster(page, label)
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(rf"/transcripts/\?cluster={run.pk}%3A{label}$"))
    members = set(ClusterMember.objects.filter(run=run, label=label).values_list("transcript_id", flat=True))
    assert listed_ids(page) == members
    shot(page, tmp_path, "discovery-cluster-transcripts.png")
    assert len(members) == Cluster.objects.get(run=run, label=label).size
    assert page.errors == []

    # Cluster → "Queue these" → a blind queue of exactly its transcripts for bob.
    Cluster.objects.filter(run=run, label=label).update(name=CLUSTER_NAME)
    page.goto(f"{live_server.url}/discovery/runs/{run.pk}/")
    page.locator("#clusters").scroll_into_view_if_needed()
    shot(page, tmp_path, "discovery-clusters.png")
    page.locator(f"#clusters tr[data-label='{label}'] a.cluster-queue").click()
    page.wait_for_url(re.compile(r"/queues/new/\?filter="))
    assert parse_qs(page.input_value("#id_filter_query")) == {"cluster": [f"{run.pk}:{label}"]}
    page.fill("#id_name", "cluster queue")
    page.select_option("#id_taxonomy", str(taxonomy().pk))
    page.check(f"input[name=auditors][value='{bob.pk}']")
    page.fill("#id_overlap", "1")  # one auditor: one label per transcript
    assert page.is_checked("#id_blind")
    with page.expect_navigation():
        page.click("button.primary:text('Create queue')")
    queue = AnnotationQueue.objects.get(name="cluster queue")
    assert queue.blind
    assert set(queue.items.values_list("transcript_id", flat=True)) == members

    # The auditor works the queue and never sees a cluster, its name or the map.
    auditor = logged_in_page(chromium, live_server, bob)
    for path in ("/discovery/", f"/discovery/runs/{run.pk}/", f"/discovery/runs/{run.pk}/map.json",
                 f"/transcripts/?cluster={run.pk}:{label}"):
        assert auditor.goto(f"{live_server.url}{path}").status == 403, path
    auditor.goto(f"{live_server.url}/annotate/")
    text = auditor.locator("body").inner_text()
    assert "cluster queue" in text
    assert CLUSTER_NAME not in text and "cluster=" not in auditor.content()
