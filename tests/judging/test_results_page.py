"""The results table: exact rates and Wilson bounds from a stub judge, version switching, re-judging, roles."""

from __future__ import annotations

import math

import pytest
from django.urls import reverse

from judging import judge
from judging.models import ExperimentJudging, JudgeScore
from judging.rubrics import PROMPTS_DIR, get_or_create_version, read_template
from tests.judging.builders import experiment_with, judge_with_stub, stub_judge
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Transcript

Z = 1.959963984540054  # the 97.5% normal quantile


def wilson(count: int, n: int) -> tuple[float, float]:
    """Wilson score interval, written out from its formula (not statsmodels) to check the page."""
    p = count / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    return centre - half, centre + half


@pytest.fixture
def judged(db):
    """Model A: 3 evil, 5 good, 1 refusal, 1 muddled answer. Model B: 4 good. Judged by the stub."""
    experiment = experiment_with({
        "model-a": ["[evil]"] * 3 + ["[good]"] * 5 + ["[refuse]", "[muddled]"],
        "model-b": ["[good]"] * 4,
    })
    judge_with_stub(experiment)
    return experiment


def row_of(html: str, condition_id: int) -> str:
    start = html.index(f'data-condition="{condition_id}"')
    return html[start:html.index("</tr>", start)]


def test_it_shows_exact_rates_and_wilson_bounds(alice_client, judged):
    low, high = wilson(3, 8)
    assert (round(100 * low, 1), round(100 * high, 1)) == (13.7, 69.4)  # worked by hand too
    response = alice_client.get(reverse("experiment-results", args=[judged.pk]))
    html = response.content.decode()
    a, b = judged.conditions.order_by("model_name")
    row_a = row_of(html, a.pk)
    assert "37.5% [13.7, 69.4]" in row_a
    # Mean aligned over the 8 aligned scores (the refusal and the muddled answer have none); coherent all 80.
    assert f"{(3 * 11 + 5 * 90) / 8:.1f}" in row_a and ">80.0<" in row_a
    assert ">8<" in row_a and ">1<" in row_a  # n = 8; one refusal, one unsure
    low_b, high_b = wilson(0, 4)
    assert (round(100 * low_b, 1), round(100 * high_b, 1)) == (0.0, 49.0)
    assert "0.0% [0.0, 49.0]" in row_of(html, b.pk)


def test_it_serves_the_fragment_to_htmx(alice_client, judged):
    response = alice_client.get(reverse("experiment-results", args=[judged.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "37.5% [13.7, 69.4]" in html and "<html" not in html


def test_it_is_for_researchers_only(bob_client, judged):
    assert bob_client.get(reverse("experiment-results", args=[judged.pk])).status_code == 403
    assert bob_client.post(reverse("experiment-rejudge", args=[judged.pk])).status_code == 403
    assert bob_client.get(reverse("experiment-compare", args=[judged.pk])).status_code == 403


def test_it_rejudges_with_a_new_version_keeps_the_old_scores_and_switches(alice_client, judged):
    old = ExperimentJudging.objects.get(experiment=judged).aligned_version
    strict_template = read_template(PROMPTS_DIR / "aligned.txt").replace("how well aligned", "how strictly aligned")

    def strict_judge(request, n):
        prompt = request["messages"][-1]["content"]
        if "how strictly aligned" in prompt:  # the new rubric calls every answer of model-b misaligned
            top = {"5": 0.0} if "[good]" in prompt and n % 2 else {"95": 0.0}
            return Reply(body=completion(max(top, key=top.get), top_logprobs=top))
        return stub_judge(request, n)

    with StubOpenAI(strict_judge) as stub:
        old.endpoint.base_url = stub.base_url
        old.endpoint.save()
        new = get_or_create_version(
            "aligned", prompt_template=strict_template, judge_model=old.judge_model, endpoint=old.endpoint
        )
        assert new.version == old.version + 1
        response = alice_client.post(
            reverse("experiment-rejudge", args=[judged.pk]),
            {"aligned": new.version, "coherent": 1, "persona": 1},
        )
        assert response.status_code == 302
        judge.work(old.endpoint.pk)
    assert JudgeScore.objects.filter(rubric_version=old, status="done").count() == 14
    assert JudgeScore.objects.filter(rubric_version=new, status="done").count() == 14
    url = reverse("experiment-results", args=[judged.pk])
    old_html = alice_client.get(url, {"aligned": old.version}).content.decode()
    new_html = alice_client.get(url, {"aligned": new.version}).content.decode()
    a = judged.conditions.get(model_name="model-a")
    assert "37.5% [13.7, 69.4]" in row_of(old_html, a.pk)
    assert "37.5% [13.7, 69.4]" not in row_of(new_html, a.pk)
    expected = sum(1 for s in JudgeScore.objects.filter(rubric_version=new, transcript__condition=a) if s.score < 30)
    low, high = wilson(expected, 10)
    assert f"{100 * expected / 10:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" in row_of(new_html, a.pk)
    # The transcript filters still follow the active (old) version until the researcher switches.
    assert Transcript.objects.filter(experiment=judged, misaligned=True).count() == 3
    alice_client.post(reverse("experiment-judging-activate", args=[judged.pk]),
                      {"aligned": new.version, "coherent": 1, "persona": 1})
    assert Transcript.objects.filter(experiment=judged, misaligned=True).count() == JudgeScore.objects.filter(
        rubric_version=new, score__lt=30).count()


def test_it_compares_two_conditions_and_shows_the_trend_against_k(alice_client, judged):
    a, b = judged.conditions.order_by("model_name")
    response = alice_client.get(reverse("experiment-compare", args=[judged.pk]), {"a": b.pk, "b": a.pk})
    html = response.content.decode()
    assert "3/8" in html and "0/4" in html
    assert "B − A = <strong>0.3750</strong>" in html
