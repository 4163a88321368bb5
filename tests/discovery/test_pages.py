"""The researcher's discovery pages, the cluster filter (list, export, queue these), a cluster turned into a
category version, and auditors kept out."""

import csv
import io
import re

import pytest
from django.urls import reverse

from judging.models import AnnotationQueue, Taxonomy
from tests.builders import cluster_run, experiment_with, taxonomy
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="alert(1)">Obedient <b>persona</b>'


@pytest.fixture
def run(db):
    experiment = experiment_with(conditions=[{"model_name": "m", "k": 0}, {"model_name": "m", "k": 16}],
                                 verdicts=[True, False, None], name="clustered")
    ids = list(Transcript.objects.filter(experiment=experiment).order_by("pk").values_list("pk", flat=True))
    # 6 transcripts: the first 4 in cluster 0, the rest in cluster 1.
    return cluster_run(experiment, {t: int(i >= 4) for i, t in enumerate(ids)}, names={0: HOSTILE})


def listed_ids(response) -> set[int]:
    return {int(pk) for pk in re.findall(r'href="/transcripts/(\d+)/', response.content.decode())}


def test_a_cluster_is_a_filter_of_the_list_the_export_and_the_queue(alice_client, bob, run):
    members = set(run.members.filter(label=0).values_list("transcript_id", flat=True))
    assert len(members) == 4
    response = alice_client.get(reverse("transcript-list"), {"cluster": f"{run.pk}:0"})
    assert response.status_code == 200
    assert listed_ids(response) == members
    export = b"".join(alice_client.get(reverse("transcript-export", args=["csv"]),
                                       {"cluster": f"{run.pk}:0"}).streaming_content)
    assert {int(row["id"]) for row in csv.DictReader(io.StringIO(export.decode()))} == members
    response = alice_client.post(reverse("queue-create"), {
        "name": "cluster 0", "filter_query": f"cluster={run.pk}:0", "taxonomy": taxonomy().pk, "overlap": 1,
        "auditors": [bob.pk], "blind": "on", "claim_minutes": 30, "majority_share": 0.5,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    queue = AnnotationQueue.objects.get(name="cluster 0")
    assert set(queue.items.values_list("transcript_id", flat=True)) == members
    # A malformed cluster selects nothing rather than everything.
    assert listed_ids(alice_client.get(reverse("transcript-list"), {"cluster": "nonsense"})) == set()


def test_the_run_page_shows_clusters_escaped_with_their_links(alice_client, run):
    response = alice_client.get(reverse("discovery-run", args=[run.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert HOSTILE not in page and "&lt;img src=x" in page  # model output is untrusted text
    assert f"cluster={run.pk}%3A0" in page
    assert "Share of each k (examples) in each cluster" in page
    figure = alice_client.get(reverse("discovery-map", args=[run.pk]), {"colour": "cluster"}).json()
    assert sum(len(trace["x"]) for trace in figure["data"]) == 6
    assert all("<" not in trace["name"] for trace in figure["data"])
    assert all(link.startswith("/transcripts/?cluster=") for trace in figure["data"] for link in trace["customdata"])
    by_k = alice_client.get(reverse("discovery-map", args=[run.pk]), {"colour": "k"}).json()
    assert sorted(trace["name"] for trace in by_k["data"]) == ["k = 0", "k = 16"]


def test_a_cluster_becomes_a_category_in_a_new_taxonomy_version(alice_client, run):
    base = taxonomy()
    before = base.categories.count()
    response = alice_client.post(reverse("discovery-category", args=[run.pk, 1]),
                                 {"taxonomy": base.pk, "name": "Rules are for others"})
    assert response.status_code == 302
    newest = Taxonomy.objects.filter(name=base.name).order_by("-version").first()
    assert newest.version == base.version + 1
    assert newest.categories.count() == before + 1
    added = newest.categories.get(key="rules-are-for-others")
    assert added.name == "Rules are for others"
    assert base.categories.count() == before  # the old version is untouched


@pytest.mark.parametrize("name,args", [
    ("discovery", []), ("discovery-run", ["run"]), ("discovery-map", ["run"]), ("discovery-search", []),
])
def test_auditors_never_see_clusters(bob_client, run, name, args):
    url = reverse(name, args=[run.pk if a == "run" else a for a in args])
    assert bob_client.get(url).status_code == 403
    assert bob_client.post(reverse("discovery-category", args=[run.pk, 0]), {"taxonomy": 1}).status_code == 403
    assert bob_client.post(reverse("discovery-embed"), {}).status_code == 403
    assert bob_client.get(reverse("transcript-list"), {"cluster": f"{run.pk}:0"}).status_code == 403
