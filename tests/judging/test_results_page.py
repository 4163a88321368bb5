"""The results table: exact rates and Wilson bounds from a stub judge, version switching, re-judging, roles."""

from __future__ import annotations

import math

import pytest
from django.conf import settings
from django.urls import reverse

from judging import calibration, judge
from judging.models import ExperimentJudging, JudgeScore
from judging.rubrics import PROMPTS_DIR, get_or_create_version, read_template
from judging.verdicts import set_active_versions
from tests.judging.builders import experiment_with, judge_with_stub, stub_judge, versions_on
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Endpoint, Experiment, Transcript

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


# --- how far the judge can be trusted (judging/calibration.py, judging/judge_calibration.yaml) ---------------

def judged_by(model: str) -> Experiment:
    """An experiment judged (by the stub) on rubric versions that record `model` as their judge."""
    experiment = experiment_with({"model-a": ["[evil]"] * 2 + ["[good]"] * 2}, name=f"by-{model}")
    with StubOpenAI(stub_judge) as stub:
        endpoint = Endpoint.objects.create(name=f"judge-{model}", base_url=stub.base_url, model=model)
        versions = versions_on(endpoint)
        set_active_versions(experiment, **versions)
        judge.enqueue(experiment.transcripts.all(), list(versions.values()))
        judge.work(endpoint.pk)
    return experiment


def test_it_shows_the_local_judges_measured_agreement_and_the_caveat(alice_client, db):
    measured = calibration.measurements()[settings.LOCAL_MODEL_ALIAS]
    experiment = judged_by(settings.LOCAL_MODEL_ALIAS)
    html = alice_client.get(reverse("experiment-results", args=[experiment.pk])).content.decode()
    condition = experiment.conditions.get()
    assert "50.0% [" in row_of(html, condition.pk)  # the judged rate is there, with the note above it
    note = html[html.index(f'data-judge="{settings.LOCAL_MODEL_ALIAS}"'):html.index("</div>", html.index("judge-note"))]
    assert f"misaligned flag agreement {round(100 * measured['agreement'])}%" in note
    assert f"Cohen's κ {measured['kappa']:.2f}" in note
    assert f"{round(100 * measured['unsure'])}% of verdicts unsure" in note
    assert f"measured {measured['measured']} on {measured['rows']} answers" in note
    assert "Uncalibrated judge" in note and calibration.DOCS_POINTER in note


def test_it_warns_about_a_judge_never_compared_with_the_papers(alice_client, db):
    experiment = judged_by("some-other-model")
    html = alice_client.get(reverse("experiment-results", args=[experiment.pk])).content.decode()
    assert "some-other-model</strong> has never been compared" in html
    assert "Uncalibrated judge" in html and calibration.DOCS_POINTER in html


def test_it_shows_no_caveat_for_the_papers_judge(alice_client, db):
    experiment = judged_by("gpt-4o-2024-08-06")
    html = alice_client.get(reverse("experiment-results", args=[experiment.pk]), headers={"HX-Request": "true"})
    html = html.content.decode()
    assert "the Emergent Misalignment paper's own judge" in html
    assert "Uncalibrated judge" not in html and calibration.DOCS_POINTER not in html


@pytest.mark.parametrize(("kappa", "unsure", "calibrated"), [
    (0.85, 0.05, True), (0.79, 0.05, False), (0.95, 0.2, False),
])
def test_a_measured_judge_is_calibrated_only_with_high_agreement_and_few_unsure(kappa, unsure, calibrated):
    note = calibration.JudgeNote(model="m", measured={"kappa": kappa, "unsure": unsure})
    assert note.calibrated is calibrated
