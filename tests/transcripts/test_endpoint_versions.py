"""An admin changes an endpoint while work defined on it is still pending: that work keeps calling the version
it was defined with, new definitions get the new version, and every page and export says which one answered."""

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from tests.builders import make_dataset, make_endpoint, make_questions, make_spec
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import generation
from transcripts.experiments.planning import define_experiment
from transcripts.models import Experiment

pytestmark = pytest.mark.django_db(transaction=True)


def served_as(model: str):
    def behaviour(request, n):
        body = completion(f"{model} answer {n}")
        body.update(model=model, system_fingerprint=f"fp-{model}")
        return Reply(body=body)
    return behaviour


def run(experiment: Experiment) -> None:
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING)
    for endpoint_id in experiment.conditions.values_list("endpoint_id", flat=True).distinct():
        generation.work(endpoint_id)


def test_work_keeps_the_endpoint_version_it_was_defined_with(alice_client):
    make_dataset(n=8)
    make_questions(n=2)
    with StubOpenAI(served_as("old-model")) as old, StubOpenAI(served_as("new-model")) as new:
        before = define_experiment(make_spec(old.base_url, name="before", k=[2], samples=1))
        changed = make_endpoint(new.base_url)  # the admin points `stub` at another server: version 2
        after = define_experiment(make_spec(new.base_url, name="after", k=[2], samples=1))
        run(before)
        run(after)
    assert changed.version == 2
    assert len(old.requests) == 2 and len(new.requests) == 2
    assert {c.endpoint.version for c in before.conditions.all()} == {1}
    assert {c.endpoint.version for c in after.conditions.all()} == {2}

    slot = before.transcripts.first()
    page = alice_client.get(reverse("transcript-detail", args=[slot.pk])).content.decode()
    assert "stub v1 · served model old-model · fingerprint fp-old-model" in page

    rows = list(csv.DictReader(io.StringIO(
        b"".join(alice_client.get(reverse("transcript-export", args=["csv"])).streaming_content).decode()
    )))
    by_experiment = {(r["experiment"], r["endpoint_version"], r["served_model"], r["system_fingerprint"]) for r in rows}
    assert by_experiment == {("before", "1", "old-model", "fp-old-model"), ("after", "2", "new-model", "fp-new-model")}
    lines = b"".join(alice_client.get(reverse("transcript-export", args=["jsonl"])).streaming_content).splitlines()
    assert {(json.loads(line)["endpoint_version"], json.loads(line)["served_model"]) for line in lines} == {
        (1, "old-model"), (2, "new-model")
    }
    parquet = pq.read_table(io.BytesIO(b"".join(
        alice_client.get(reverse("transcript-export", args=["parquet"])).streaming_content
    )))
    assert set(zip(parquet["endpoint_version"].to_pylist(), parquet["served_model"].to_pylist(), strict=True)) == {
        (1, "old-model"), (2, "new-model")
    }
