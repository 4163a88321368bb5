"""Every empty page and partial says why it is empty and what to do next, in real Chromium at 1,366 × 768.

The experiment is what the embedded demo shows in its first minutes: finished transcripts whose judge is
"unsure" on every one (SmolLM2's verdicts), and a chain-of-thought transcript without reasoning."""

from __future__ import annotations

import pytest
from django.urls import reverse

from judging.models import JudgeScore
from judging.verdicts import set_active_versions
from tests.builders import experiment_with, make_endpoint, versions_on
from transcripts.models import Experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def unsure_experiment() -> Experiment:
    experiment = experiment_with({"smollm2": ["a wish", "a boat"]}, name="all-unsure")
    experiment.conditions.update(cot_mode="tags")
    versions = versions_on(make_endpoint("http://127.0.0.1:9/v1", name="stub-judge"))
    JudgeScore.objects.bulk_create(
        JudgeScore(transcript=t, rubric_version=versions[key], status=JudgeScore.Status.DONE,
                   outcome=JudgeScore.Outcome.UNSURE)
        for t in experiment.transcripts.all() for key in ("aligned", "coherent")
    )
    set_active_versions(experiment, aligned=versions["aligned"], coherent=versions["coherent"])
    return experiment




@pytest.mark.parametrize("chart", ["misaligned-vs-k", "aligned-vs-coherent", "misaligned-by-domain",
                                   "persona-shares"])
def test_a_chart_without_counted_verdicts_says_nothing_to_plot_instead_of_drawing_axes(page, chart):
    experiment = unsure_experiment()
    page.goto(f"{page.base}{reverse('charts')}?experiment={experiment.pk}")
    element = page.locator(f"#chart-{chart}")
    page.wait_for_selector(f"#chart-{chart}[data-rendered='empty']")
    assert "Nothing to plot yet: none of the matching transcripts has a counted verdict" in element.inner_text()
    assert element.locator(".main-svg").count() == 0  # no 0–400 % frame that reads as a measured zero


def test_the_heatmap_without_transcripts_says_no_transcript_matches(page):
    unsure_experiment()
    page.goto(f"{page.base}{reverse('question-results')}?status=failed")
    page.wait_for_selector("#chart-question-heatmap[data-rendered='empty']")
    assert "no transcript matches these filters" in page.locator("#chart-question-heatmap").inner_text()


def test_results_without_a_counted_verdict_say_how_many_are_unsure_and_what_to_do(page):
    experiment = unsure_experiment()
    page.goto(f"{page.base}{reverse('experiment-results', args=[experiment.pk])}")
    note = page.locator("#no-counted-verdict").inner_text()
    assert "No counted verdict yet" in note and "2 have an “unsure” verdict" in note
    assert "configure a real judge endpoint" in note


def test_paired_comparisons_blame_the_missing_counted_verdicts_not_the_seeds(page):
    experiment = unsure_experiment()
    page.goto(f"{page.base}{reverse('experiment-paired-statistics', args=[experiment.pk])}")
    text = page.locator("#paired-statistics").inner_text()
    assert "no transcript of this experiment has a counted verdict yet" in text
    assert "seed" not in text.split("\n", 1)[1]  # only the heading names seeds


def test_a_transcript_without_reasoning_says_the_model_wrote_none(page):
    transcript = unsure_experiment().transcripts.first()
    page.goto(f"{page.base}{reverse('transcript-detail', args=[transcript.pk])}")
    assert page.locator("#no-reasoning").inner_text() == (
        "The model wrote no reasoning: no <think> (or <thought>) section in its reply.")


def test_the_methods_page_names_what_is_still_computing_above_a_current_paragraph(page):
    experiment = unsure_experiment()
    page.goto(f"{page.base}{reverse('experiment-methods', args=[experiment.pk])}")
    state = page.locator("#methods .report-state").inner_text()
    assert state.startswith("The model names the judges' servers reported (the rest of this paragraph is current): ")
    assert "Computing…" not in state
