"""Reuse on request: a slot whose whole request (endpoint version, messages, temperature, max_tokens, seed)
equals an answered one is filled from it without a call, linked to it; off by default."""

import pytest
from django.urls import reverse

from tests.builders import make_dataset, make_endpoint, make_questions, make_spec
from tests.conftest import computed
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import generation
from transcripts.experiments.estimate import estimate
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.spec import SpecError, parse_spec
from transcripts.models import Experiment

pytestmark = pytest.mark.django_db(transaction=True)


def run(experiment: Experiment) -> None:
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    generation.work(experiment.conditions.first().endpoint_id)


def answered(request, n):
    return Reply(body=completion(f"answer {n}", prompt_tokens=100, completion_tokens=10))


@pytest.fixture
def first_study():
    make_dataset(n=20)
    make_questions(n=3)
    with StubOpenAI(answered) as stub:
        experiment = define_experiment(make_spec(stub.base_url, name="study", k=[0, 4], samples=2))
        run(experiment)
        yield stub, experiment


def test_an_extended_study_with_reuse_makes_no_call_for_the_old_conditions(first_study, alice_client):
    stub, first = first_study
    assert len(stub.requests) == 12  # 2 k × 3 questions × 2 samples
    extended = make_spec(stub.base_url, name="study-k8", k=[0, 4, 8], samples=2, reuse=True)
    (row,) = estimate(parse_spec(extended))
    assert (row.calls, row.reused) == (6, 12)
    assert row.cost <= row.list_cost
    second = define_experiment(extended)
    run(second)
    assert len(stub.requests) == 12 + 6, "only the new k = 8 slots are sent"
    assert all(len(r["messages"]) == 8 * 2 + 1 for r in stub.requests[12:])
    old = {(t.condition.k, t.question_id, t.sample_index): t for t in first.transcripts.select_related("condition")}
    slots = list(second.transcripts.select_related("condition"))
    assert {s.status for s in slots} == {"done"}
    for slot in slots:
        if slot.condition.k == 8:
            assert slot.reused_from_id is None
            continue
        original = old[(slot.condition.k, slot.question_id, slot.sample_index)]
        assert (slot.reused_from_id, slot.answer, slot.seed) == (original.pk, original.answer, original.seed)
    second.refresh_from_db()
    assert second.status == "done"
    assert second.charged_prompt_tokens == 6 * 100, "reused slots cost nothing"
    page = alice_client.get(reverse("experiment-progress", args=[second.pk])).content.decode()
    assert "12 slots reused from earlier answers" in page
    methods = computed(alice_client, reverse("experiment-methods", args=[second.pk])).content.decode()
    assert "12 of the 18 answers were not sampled anew" in methods


def test_reuse_is_off_by_default_and_can_name_experiments(first_study):
    stub, _first = first_study
    (row,) = estimate(parse_spec(make_spec(stub.base_url, name="again", k=[0, 4], samples=2)))
    assert row.reused == 0
    named = define_experiment(make_spec(stub.base_url, name="named", k=[0], samples=2, reuse=["study"]))
    assert named.transcripts.filter(reused_from__isnull=False).count() == 6
    with pytest.raises(SpecError, match="no experiment named 'nope'"):
        parse_spec(make_spec(stub.base_url, name="x", reuse=["nope"]))


def test_a_different_request_is_not_reused(first_study):
    stub, _first = first_study
    # Another temperature, another max_tokens, another endpoint version: each is another request.
    hotter = define_experiment(make_spec(stub.base_url, name="hot", k=[0], samples=2, temperature=0.5, reuse=True))
    longer = define_experiment(make_spec(stub.base_url, name="long", k=[0], samples=2, max_tokens=99, reuse=True))
    make_endpoint(stub.base_url, max_concurrency=5)  # a new version of `stub`
    moved = define_experiment(make_spec(stub.base_url, name="v2", k=[0], samples=2, reuse=True,
                                        endpoint={"max_concurrency": 5}))
    for experiment in (hotter, longer, moved):
        assert not experiment.transcripts.filter(reused_from__isnull=False).exists()
