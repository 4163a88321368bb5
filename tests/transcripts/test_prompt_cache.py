"""Prompt-cache accounting: the cached prompt tokens a server reports are stored per transcript and per judge
score, priced at the endpoint's cached price by the one cost formula, and the experiment page shows the hit
rate and the money saved."""

from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from judging.models import JudgeScore
from judging.results import judge
from tests.builders import make_dataset, make_endpoint, make_questions, make_spec, stub_judge, versions_on
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import generation
from transcripts.experiments.estimate import CACHE_ASSUMPTION, CACHE_MIN_TOKENS, estimate
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.prompts import prefix_tokens
from transcripts.experiments.spec import parse_spec
from transcripts.models import Endpoint, Experiment

pytestmark = pytest.mark.django_db(transaction=True)

PRICES = {"price_prompt_per_mtok": 2, "price_completion_per_mtok": 10, "price_cached_prompt_per_mtok": 1}


def cached_reply(request, n):
    # 1,000 prompt tokens of which 600 were cached, 100 completion tokens.
    return Reply(body=completion(f"answer {n}", prompt_tokens=1000, completion_tokens=100, cached_tokens=600))


def test_the_cost_formula_prices_cached_tokens_and_batch():
    endpoint = Endpoint(price_prompt_per_mtok=Decimal(2), price_completion_per_mtok=Decimal(10),
                        price_cached_prompt_per_mtok=Decimal(1), price_batch_prompt_per_mtok=Decimal(1),
                        price_batch_completion_per_mtok=Decimal(5))
    assert endpoint.cost(1_000_000, 0) == 2
    assert endpoint.cost(1_000_000, 0, 600_000) == Decimal("1.4")  # 0.4 M at 2 + 0.6 M at 1
    assert endpoint.cost(0, 1_000_000, batch_api=True) == 5
    # In a batch, cached tokens cost the lower of the batch prompt and cached prices unless one is set.
    assert endpoint.cost(1_000_000, 0, 1_000_000, batch_api=True) == 1
    endpoint.price_batch_cached_prompt_per_mtok = Decimal("0.5")
    assert endpoint.cost(1_000_000, 0, 1_000_000, batch_api=True) == Decimal("0.5")
    # Without a cached price, cached tokens cost what other prompt tokens do.
    assert Endpoint(price_prompt_per_mtok=Decimal(2)).cost(1_000_000, 0, 600_000) == 2


def test_it_stores_and_prices_cached_tokens_and_the_page_shows_the_saving(alice_client):
    make_dataset(n=8)
    make_questions(n=3)
    with StubOpenAI(cached_reply) as stub:
        experiment = define_experiment(make_spec(stub.base_url, endpoint=PRICES, k=[2], samples=1))
        Experiment.objects.filter(pk=experiment.pk).update(status="running")
        generation.work(experiment.conditions.get().endpoint_id)
    slots = list(experiment.transcripts.all())
    assert [(s.status, s.prompt_tokens, s.cached_tokens) for s in slots] == [("done", 1000, 600)] * 3
    experiment.refresh_from_db()
    # Each: 400 × 2 + 600 × 1 + 100 × 10 = 2,400 µ$, against 3,000 at list price.
    assert experiment.spent_usd == Decimal("0.0072")
    assert experiment.cache_saved_usd == Decimal("0.0018")
    assert (experiment.charged_prompt_tokens, experiment.cached_tokens) == (3000, 1800)
    page = alice_client.get(reverse("experiment-progress", args=[experiment.pk])).content.decode()
    assert 'id="cache-hit-rate">60.0%' in page
    assert 'id="cache-saved">$0.0018' in page


def test_judge_scores_store_cached_tokens():
    make_dataset(n=8)
    questions = make_questions(n=2)

    def judge_cached(request, n):
        reply = stub_judge(request, n)
        reply.body["usage"]["prompt_tokens_details"] = {"cached_tokens": 7}
        return reply

    with StubOpenAI(lambda r, n: Reply(body=completion("[good] fine"))) as stub:
        experiment = define_experiment(make_spec(stub.base_url, k=[0], samples=1))
        Experiment.objects.filter(pk=experiment.pk).update(status="running")
        generation.work(experiment.conditions.get().endpoint_id)
    with StubOpenAI(judge_cached) as stub:
        endpoint = make_endpoint(stub.base_url, name="stub-judge", **PRICES)
        versions = versions_on(endpoint)
        judge.enqueue(experiment.transcripts.all(), [versions["aligned"], versions["coherent"]])
        judge.work(endpoint.pk)
    scores = JudgeScore.objects.all()
    assert len(scores) == 2 * len(questions)
    assert {(s.status, s.cached_tokens) for s in scores} == {("done", 7)}
    experiment.refresh_from_db()
    assert experiment.cached_tokens == 7 * len(scores)


def test_the_estimate_projects_cached_tokens_from_the_prefix_grouped_order():
    dataset = make_dataset(n=8, filler=2000)  # ~500 tokens an example: k = 4 is over the cache's minimum
    make_questions(n=3)
    spec = parse_spec(make_spec(endpoint=PRICES, k=[0, 4], samples=2, max_tokens=10))
    (row,) = estimate(spec)
    prefix = prefix_tokens(dataset, 0, (4,))[4]
    assert prefix >= CACHE_MIN_TOKENS
    # k = 4: every slot of the condition but the first finds its examples cached; k = 0 has none to cache.
    assert row.cached_tokens == prefix * (3 * 2 - 1)
    assert row.cost == spec.endpoints[0].cost(row.prompt_tokens, row.completion_tokens, row.cached_tokens)
    assert row.list_cost == spec.endpoints[0].cost(row.prompt_tokens, row.completion_tokens)
    assert row.saving == row.list_cost - row.cost > 0
    page = render_to_string("transcripts/experiment_confirm.html", {
        "spec": spec, "estimates": [row], "total_cost": row.cost, "total_list_cost": row.list_cost,
        "cache_assumption": CACHE_ASSUMPTION, "spec_json": "{}",
    })
    assert "prefix-grouped order" in page and f'id="total-list-cost">{row.list_cost:.2f}' in page
