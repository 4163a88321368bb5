"""Two auditors give misaligned flags with the keyboard in real Chromium; the researcher's calibration page shows
the judge's precision and recall against them, draws both curves, and a disagreement cell opens its transcripts."""

import re

import pytest
from django.urls import reverse
from sklearn.metrics import precision_score, recall_score

from judging.models import AnnotationQueue, Label
from tests.builders import make_queue, scored_experiment
from tests.conftest import AUDITOR_HOME, answer_queue_by_keyboard, log_in, make_user

pytestmark = pytest.mark.browser

ALIGNED = [10, 20, 45, 55, 80, 90]  # coherent 90 each: the judge flags the first two (aligned < 30)
HUMANS = [True, False, True, False, False, False]  # both auditors: one false positive, one false negative
JUDGE = [True, True, False, False, False, False]


def flag(page) -> None:
    """Flag the item on the page as the humans do (HUMANS), with its key."""
    number = int(re.search(r"Reasoning of transcript (\d+)", page.locator("#reasoning").inner_text()).group(1))
    page.keyboard.press("m" if HUMANS[number] else "a")
    chosen = "#verdict-misaligned" if HUMANS[number] else "#verdict-aligned"
    assert page.locator(f"{chosen}[aria-pressed='true']").count() == 1


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_auditors_flag_answers_and_the_calibration_page_scores_the_judge(live_server, chromium, db,
                                                                        celery_worker_factory):
    celery_worker_factory(concurrency=2)  # computes the calibration report the page asks for
    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    make_user("alice", "researcher")
    experiment, transcripts = scored_experiment([("model-a", aligned, 90) for aligned in ALIGNED])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol], overlap=2)
    base = live_server.url

    for name in ("bob", "carol"):
        page = log_in(chromium, base, name, lands_on=AUDITOR_HOME)
        assert answer_queue_by_keyboard(page, base, queue, flag, hidden="model-a") == len(ALIGNED)
    assert Label.objects.filter(item__queue=queue, misaligned__isnull=False).count() == 2 * len(ALIGNED)

    page = log_in(chromium, base, "alice", lands_on=f"^{re.escape(base)}/$")
    page.goto(f"{base}{reverse('queue-detail', args=[queue.pk])}")
    page.click("#calibration-link")
    current = page.locator("#current")
    assert current.locator(".precision .value").inner_text() == f"{precision_score(HUMANS, JUDGE):.3f}"
    assert current.locator(".recall .value").inner_text() == f"{recall_score(HUMANS, JUDGE):.3f}"
    for name in ("roc", "pr"):
        page.wait_for_selector(f"#chart-calibration-{name}[data-rendered='true']", timeout=15000)

    # The judge missed transcript 2 (humans: misaligned; judge: aligned 45): its cell opens exactly it.
    with page.expect_navigation():
        current.locator(".cell-fn a").click()
    links = page.locator("#cell-transcripts a").all_inner_texts()
    assert links == [f"#{transcripts[2].pk}"]
    with page.expect_navigation():
        page.locator("#cell-transcripts a").click()
    assert page.url.endswith(reverse("transcript-detail", args=[transcripts[2].pk]))
