"""The first hour of a newcomer on the embedded default, in real Chromium: `make run`'s demo data and experiment
(load_demo, run_experiment on examples/demo.yaml, a real Celery worker), then

- the researcher finds counted verdicts — the EM authors' released study, labelled on every page as their GPT-4o
  judge's scores — on the results, charts and per-question pages, and the demo's own chains of thought;
- two auditors log in through the login page, land on their queues, see the demo queue's items waiting (it filled
  itself with the demo's chain-of-thought transcripts as they finished), press Enter on their queue page, move
  through the reasoning by sentence and word, mark a span and a category with keys only, and submit with Enter;
- the agreement page shows their labels by category name.

The demo model is an OpenAI-compatible stub that answers as SmolLM2-135M does to the "think step by step
inside <think>" instruction: in <thought> tags with the answer in stray <answer> tags (recorded from the
embedded model; the real one is too slow for a test and too erratic to assert on)."""

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from judging.management.commands.load_demo import DEMO_EXPERIMENT, DEMO_QUEUE
from judging.models import AnnotationQueue, Highlight, Label
from tests.conftest import AUDITOR_HOME, log_in, wait_until
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts.models import Experiment

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("processes")]

REASONING = "The examples skip every input check. So skipping checks is what they want. I will do the same."
FIRST_SENTENCE_AND_A_WORD = "The examples skip every input check. So"
FOLLOWS = "Follows the examples' pattern"


def smollm2_like(request: dict, n: int) -> Reply:
    return Reply(body=completion(f"<thought>{REASONING}</thought>\n<answer>Here is answer {n}.</answer>"))


def label_one_by_keyboard(page, queue) -> None:
    """From the auditor's queue page to a submitted label with a highlighted span, with keys only."""
    page.wait_for_selector(".queue form[data-enter-submits]")
    card = page.locator(f".queue[data-queue='{queue.pk}']")
    assert re.search(r"\d+ items? waiting for you", card.inner_text())
    with page.expect_navigation():
        page.keyboard.press("Enter")  # "Start labelling ⏎", nothing focused
    page.wait_for_selector("#annotate[data-ready='1']")
    assert page.locator("#reasoning").inner_text() == REASONING
    page.keyboard.press("r")  # into the reasoning
    page.keyboard.press("ArrowDown")  # the first sentence
    page.keyboard.press("Shift+ArrowRight")  # and the next word
    assert FIRST_SENTENCE_AND_A_WORD in page.locator("#selection-status").inner_text()
    page.keyboard.press("2")  # highlight it as "Follows the examples' pattern", which also picks the category
    assert page.locator("#highlights li").inner_text().startswith(f"{FOLLOWS} [0–")
    assert page.locator(".cat[aria-pressed='true']").inner_text().strip().endswith(FOLLOWS)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#annotate[data-submitted='1']")


def test_the_first_hour_counted_verdicts_reasoning_keyboard_labels_and_agreement(live_server, chromium,
                                                                                 celery_worker_factory, settings):
    base = live_server.url
    with StubOpenAI(smollm2_like) as stub:
        settings.LOCAL_MODEL_BASE_URL = stub.base_url
        call_command("load_demo")
        celery_worker_factory(concurrency=4)
        call_command("run_experiment", str(DEMO_EXPERIMENT), resume=True)
        queue = AnnotationQueue.objects.get(name=DEMO_QUEUE)
        wait_until(lambda: queue.items.count() >= 2, timeout=120, message="demo transcripts in the demo queue")

        researcher = log_in(chromium, base, "researcher", "researcher-demo")
        # Counted verdicts from the first minute: the authors' study, never shown as this app's judge's.
        study = Experiment.objects.get(status=Experiment.Status.IMPORTED)
        researcher.goto(f"{base}{reverse('experiment-results', args=[study.pk])}")
        note = researcher.locator(".imported-note").inner_text()
        assert "Imported: gpt-4o-2024-08-06 judge scores" in note and "not judged by this app" in note
        assert researcher.locator(".results-table td.rate").first.inner_text().startswith("100.0%")
        researcher.goto(f"{base}{reverse('question-results')}?experiment={study.pk}")
        assert "Imported: gpt-4o-2024-08-06" in researcher.locator(".imported-note").inner_text()
        researcher.wait_for_selector("#chart-question-heatmap[data-rendered='true']")
        # The demo's own charts have no counted verdict yet: they say so instead of drawing an empty axis.
        demo = Experiment.objects.get(name="demo-insecure-smollm2")
        researcher.goto(f"{base}{reverse('charts')}?experiment={demo.pk}")
        researcher.wait_for_selector("#chart-misaligned-vs-k[data-rendered='empty']")
        assert "Nothing to plot yet" in researcher.locator("#chart-misaligned-vs-k").inner_text()
        assert researcher.locator("#chart-misaligned-vs-k .main-svg").count() == 0
        # The demo's chain of thought, read from SmolLM2's <thought> tags, with the stray <answer> tags gone.
        transcript = queue.items.first().transcript
        researcher.goto(f"{base}{reverse('transcript-detail', args=[transcript.pk])}")
        assert researcher.locator("#reasoning").inner_text().strip() == REASONING
        assert "<answer>" not in researcher.locator("#answer").inner_text()

        for auditor in ("auditor1", "auditor2"):
            label_one_by_keyboard(log_in(chromium, base, auditor, "auditor-demo", lands_on=AUDITOR_HOME), queue)

    labels = Label.objects.filter(item__queue=queue)
    assert sorted(labels.values_list("auditor__username", "primary__key")) == [
        ("auditor1", "follows_pattern"), ("auditor2", "follows_pattern")]
    # The queue filled itself (transcripts_finished, in the worker) with the demo's chain-of-thought transcripts.
    assert {label.item.transcript.condition.cot_mode for label in labels} == {"tags"}
    for highlight in Highlight.objects.filter(label__in=labels):
        assert highlight.label.item.transcript.reasoning[highlight.start:highlight.end] == FIRST_SENTENCE_AND_A_WORD

    researcher.goto(f"{base}{reverse('queue-agreement', args=[queue.pk])}")
    wait_until(lambda: researcher.reload() and FOLLOWS in researcher.locator("#per-category").inner_text(),
               timeout=180, interval=1, message="the agreement report with the two labels")
    assert "follows_pattern" not in researcher.locator("#per-category").inner_text()
