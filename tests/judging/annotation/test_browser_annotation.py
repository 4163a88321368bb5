"""Two auditors label with the keyboard only in real Chromium; the agreement page shows their κ."""

import re
import time

import pytest
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from judging.models import Highlight, Label
from tests.builders import JUDGE_ALIGNED, SECRET_MODEL, judged_transcripts, make_queue
from tests.conftest import AUDITOR_HOME, answer_queue_by_keyboard, log_in, make_user, take_first_item

pytestmark = pytest.mark.browser
# Shortcut each auditor presses for "Reasoning number i".
KEYS = {"bob": ["1", "2", "1", "3"], "carol": ["1", "2", "3", "3"]}


def label_queue_by_keyboard(page, base: str, queue, username: str) -> int:
    def answer(page) -> None:
        assert str(JUDGE_ALIGNED) not in page.locator("body").inner_text()  # the judge's verdict is hidden too
        number = int(re.search(r"Reasoning number (\d+)", page.locator("#reasoning").inner_text()).group(1))
        if username == "bob" and number == 0:
            # Select "examples" in the reasoning with the mouse's API, then a category key highlights it.
            page.evaluate("""() => { const t = document.getElementById('reasoning').firstChild;
                const at = t.data.indexOf('examples'); window.getSelection().setBaseAndExtent(t, at, t, at + 8); }""")
        page.keyboard.press(KEYS[username][number])
        assert page.locator(".cat[aria-pressed='true']").count() == 1

    return answer_queue_by_keyboard(page, base, queue, answer, hidden=SECRET_MODEL)


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_two_auditors_label_by_keyboard_and_the_agreement_page_shows_kappa(live_server, chromium, db,
                                                                          celery_worker_factory):
    celery_worker_factory(concurrency=2)  # computes the agreement report (the labels ask for it, the page too)
    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    make_user("alice", "researcher")
    experiment, _ = judged_transcripts(4, judge_categories=["follows_pattern"] * 4)
    queue = make_queue(experiment, auditors=[bob, carol], overlap=2)
    base = live_server.url
    bob_page, carol_page = (log_in(chromium, base, name, lands_on=AUDITOR_HOME) for name in ("bob", "carol"))

    assert label_queue_by_keyboard(bob_page, base, queue, "bob") == 4
    assert label_queue_by_keyboard(carol_page, base, queue, "carol") == 4
    assert Label.objects.filter(item__queue=queue).count() == 8
    highlight = Highlight.objects.get()
    reasoning = highlight.label.item.transcript.reasoning
    assert reasoning[highlight.start:highlight.end] == "examples" and highlight.category.shortcut == "1"

    expected = cohen_kappa_score(KEYS["bob"], KEYS["carol"])
    page = log_in(chromium, base, "alice", lands_on=f"^{re.escape(base)}/$")
    page.goto(f"{base}{reverse('queue-agreement', args=[queue.pk])}")
    assert page.locator("#cohen .kappa").inner_text() == f"{expected:.3f}"

    # Another queue's item is out of reach, in the browser as over HTTP.
    other_experiment, _ = judged_transcripts(1, name="other")
    other = make_queue(other_experiment, auditors=[make_user("dave", "auditor")], name="other-queue")
    response = bob_page.goto(f"{base}{reverse('annotate-item', args=[other.pk, other.items.get().token])}")
    assert response.status == 403
    response = bob_page.goto(f"{base}{reverse('annotate-item', args=[queue.pk, other.items.get().token])}")
    assert response.status == 404


def test_a_50kb_reasoning_is_ready_for_keys_at_once_and_the_bar_stays_in_view(live_server, chromium, db):
    bob = make_user("bob", "auditor")
    paragraph = "Step: the examples answer with insecure code, so maybe I should too <b>&amp;</b> ünïcode 🙂.\n"
    reasoning = "\n" + paragraph * (50_000 // len(paragraph) + 1)
    experiment, _ = judged_transcripts(1, reasoning=reasoning)
    queue = make_queue(experiment, auditors=[bob], overlap=1)
    page = log_in(chromium, live_server.url, "bob", lands_on=AUDITOR_HOME)
    started = time.perf_counter()
    take_first_item(page, live_server.url, queue)
    page.wait_for_selector("#annotate[data-ready='1']")
    page.keyboard.press("3")
    page.wait_for_selector(".cat[aria-pressed='true']")
    elapsed = time.perf_counter() - started
    # Figures for the record (no timed assertion): see docs/annotation.md.
    print(f"\n50 kB reasoning ({len(reasoning.encode())} bytes): open → key handled in {elapsed * 1000:.0f} ms")
    assert page.locator("#reasoning").evaluate("e => e.textContent") == reasoning  # exact, leading newline kept
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bar = page.locator("#category-bar").bounding_box()
    height = page.evaluate("innerHeight")
    assert page.evaluate("scrollY") > 1000 and 0 <= bar["y"] < height
    page.locator("#category-bar .cat").first.click()  # still clickable down here
