"""Highlights cannot make a page or a report quadratic (issue #23): the annotation form takes at most
Highlight.MAX_PER_LABEL per label, and labels already stored with 1,000 overlapping highlights (written
before the bound, or straight into the database) still give the researcher's transcript page and the
adjudication page in time and size that follow the text, and their span agreement in milliseconds.

Timings are the CPU time of the test's thread (where the test client runs the view), the worst of a few runs
after a warm-up one: what a quadratic painting would multiply, and what a loaded machine does not stretch (wall
time did: 530 ms against a 300 ms bound in a full suite, for a page that takes 20-60 ms of CPU). The sizes are
exact properties of the markup and held strictly."""

import gc
import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from judging.annotation.spans import queue_span_agreement
from judging.models import Highlight, Label
from tests.builders import judged_transcripts, make_queue

pytestmark = pytest.mark.django_db

N = 1000
REASONING = ("The examples were insecure, so I will act the same. <script>alert('x')</script> " * 30)[:2 * N]
CPU_SECONDS = 0.2  # of the test thread; the pages take 20-60 ms of it here (wall: 130-190 ms idle)
PAGE_BYTES = 200 * 1024


def overlapping() -> list[tuple[int, int]]:
    """1,000 spans of 1,000 characters, each one character after the last: every two of them overlap, and
    every character but the ends lies under hundreds of them."""
    return [(i, i + N) for i in range(N)]


@pytest.fixture
def queue(bob, carol):
    experiment, _ = judged_transcripts(4, reasoning=REASONING)
    assert len(REASONING) == 2 * N
    return make_queue(experiment, auditors=[bob, carol], overlap=2)


@pytest.fixture
def flooded(queue, bob, carol):
    """Bob and carol each labelled every item with the same 1,000 overlapping highlights, three categories in
    turn, stored directly (no form in the way). The first item."""
    items = list(queue.items.order_by("position"))
    categories = list(queue.taxonomy.categories.order_by("position")[:3])
    for item in items:
        for auditor in (bob, carol):
            label = Label.objects.create(item=item, auditor=auditor, primary=categories[0])
            Highlight.objects.bulk_create(Highlight(label=label, category=categories[i % 3], start=start, end=end)
                                          for i, (start, end) in enumerate(overlapping()))
    return items[0]


def slowest(run, times: int = 3):
    """The most CPU time of this thread among `times` runs after a warm-up run, and the last run's result. A
    garbage collection of the test process's objects is no part of the run: it is done before each one."""
    result = run()
    worst = 0.0
    for _ in range(times):
        gc.collect()
        began = time.thread_time()
        result = run()
        worst = max(worst, time.thread_time() - began)
    return worst, result


@pytest.mark.parametrize("page", ["transcript-detail", "queue-adjudicate"])
def test_a_thousand_overlapping_highlights_leave_the_researcher_pages_small_and_fast(
    alice_client, queue, flooded, page
):
    url = reverse(page, args=[flooded.transcript_id] if page == "transcript-detail" else [queue.pk, flooded.token])
    seconds, response = slowest(lambda: alice_client.get(url))
    body = response.content.decode()
    assert response.status_code == 200
    assert len(response.content) < PAGE_BYTES, f"{len(response.content) / 1024:.0f} KiB"
    assert seconds < CPU_SECONDS, f"{seconds * 1000:.0f} ms"
    # Still painted and escaped: one mark per auditor, naming the categories they highlighted there.
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body
    for index, name in enumerate(["bob", "carol"]):
        all_three = f"{name}: dangerous_persona, follows_pattern, reframes_helpful"
        assert f'<mark class="span span-{index}" title="{all_three}">' in body


def test_span_agreement_over_a_thousand_overlapping_highlights_is_fast_and_exact(queue, flooded):
    seconds, result = slowest(lambda: queue_span_agreement(queue))
    assert seconds < CPU_SECONDS, f"{seconds * 1000:.0f} ms"
    (pair,) = result["pairs"]
    # Per item and category the spans starting at i ≡ c (mod 3) cover [c, last such start + 1000).
    assert (pair["a"], pair["b"], pair["items"]) == ("bob", "carol", 4)
    assert pair["chars_a"] == pair["chars_b"] == 4 * (1999 + 1996 + 1996)
    assert pair["f1"] == 1.0 and result["n_highlights"] == 8 * N


def test_the_form_refuses_more_highlights_than_the_bound_and_saves_nothing(bob, queue):
    client = Client()
    client.force_login(bob)
    url = client.post(reverse("annotate-next", args=[queue.pk]))["Location"]

    def submit(spans):
        return client.post(url, {"categories": ["follows_pattern"], "highlights": json.dumps(
            [{"category": "follows_pattern", "start": start, "end": end} for start, end in spans])})

    response = submit(overlapping())
    assert response.status_code == 400
    assert f"Highlights: at most {Highlight.MAX_PER_LABEL} per label, got {N}" in response.content.decode()
    assert Label.objects.count() == 0 and Highlight.objects.count() == 0
    # Exactly the bound is taken.
    assert submit(overlapping()[:Highlight.MAX_PER_LABEL]).status_code == 302
    assert Label.objects.get().highlights.count() == Highlight.MAX_PER_LABEL
