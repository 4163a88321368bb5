"""The queue items page (researchers): a page at a time in queue order, its links keeping the filter, and a
page's cost independent of its length (no query per row)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from judging.annotation import views
from judging.models import AnnotationQueue, Label
from tests.builders import judged_transcripts, label, make_queue, scored_experiment, taxonomy

CATEGORIES = ["follows_pattern", "dangerous_persona", "follows_pattern", "follows_pattern", "dangerous_persona",
              "follows_pattern", "follows_pattern", "dangerous_persona"]


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(views, "ITEMS_PER_PAGE", 2)


@pytest.fixture
def queue(bob, carol):
    experiment, _ = judged_transcripts(len(CATEGORIES), judge_categories=CATEGORIES)
    return make_queue(experiment, auditors=[bob, carol])


def in_queue_order(queue, **lookups) -> list[int]:
    return list(queue.items.filter(**lookups).order_by("position").values_list("transcript_id", flat=True))


def shown(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r"<td>#(\d+)</td>", page)]


def link(page: str, rel: str) -> str | None:
    """The href of the page's previous or next link (HTML-unescaped), or None."""
    found = re.search(rf'href="([^"]+)" id="{rel}-page"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_pages_walk_the_queue_in_order_forwards_and_back(alice_client, queue, small_pages):
    url = reverse("queue-items", args=[queue.pk])
    order = in_queue_order(queue)
    pages, page = [], alice_client.get(url).content.decode()
    assert link(page, "previous") is None
    while True:
        pages.append(page)
        if link(page, "next") is None:
            break
        page = alice_client.get(url + link(page, "next")).content.decode()
    assert [shown(p) for p in pages] == [order[i:i + 2] for i in range(0, len(order), 2)]
    assert "End of the queue" in pages[-1]
    # Back from the last page, one page at a time, to the first (which has no previous page).
    page = pages[-1]
    for expected in reversed(pages[:-1]):
        page = alice_client.get(url + link(page, "previous")).content.decode()
        assert shown(page) == shown(expected)
    assert link(page, "previous") is None


def test_the_filter_is_kept_from_page_to_page(alice_client, queue, small_pages):
    url = reverse("queue-items", args=[queue.pk])
    page = alice_client.get(url, {"judge": "follows_pattern"}).content.decode()
    seen = shown(page)
    while link(page, "next"):
        assert "judge=follows_pattern" in link(page, "next")
        page = alice_client.get(url + link(page, "next")).content.decode()
        seen += shown(page)
        assert "judge=follows_pattern" in (link(page, "previous") or "")
    assert seen == in_queue_order(queue, transcript__judge_category="follows_pattern")


def test_one_auditors_label_filters_the_items(alice_client, queue, bob, small_pages):
    cats = {c.key: c for c in taxonomy().categories.all()}
    order = list(queue.items.order_by("position"))
    for i, item in enumerate(order[:5]):
        Label.objects.create(item=item, auditor=bob, primary=cats["dangerous_persona" if i % 2 else "follows_pattern"])
    url = reverse("queue-items", args=[queue.pk])
    page = alice_client.get(url, {"auditor": "bob", "label": "follows_pattern"}).content.decode()
    second = alice_client.get(url + link(page, "next")).content.decode()
    assert shown(page) + shown(second) == [order[i].transcript_id for i in (0, 2, 4)]
    assert link(second, "next") is None
    assert shown(alice_client.get(url, {"auditor": "carol", "label": "follows_pattern"}).content.decode()) == []


def test_a_pages_queries_do_not_grow_with_its_rows(alice_client, bob, carol, monkeypatch):
    """Each row shows every auditor's verdict: loaded for the whole page at once, not per row."""
    experiment, rows = scored_experiment([("model-a", 20, 90)] * 6, name="verdicts")
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol])
    for transcript in rows:
        label(queue, transcript, bob, misaligned=True, alignment_score=10)
        label(queue, transcript, carol, misaligned=False, alignment_score=70)
    url = reverse("queue-items", args=[queue.pk])
    counts = {}
    for size in (2, 6):
        monkeypatch.setattr(views, "ITEMS_PER_PAGE", size)
        with CaptureQueriesContext(connection) as queries:
            page = alice_client.get(url).content.decode()
        assert len(shown(page)) == size and page.count("bob: <strong>misaligned</strong> · score 10") == size
        counts[size] = len(queries)
    assert counts[2] == counts[6]


def test_a_malformed_cursor_shows_the_first_page(alice_client, queue, small_pages):
    url = reverse("queue-items", args=[queue.pk])
    assert shown(alice_client.get(url, {"after": "not-a-cursor"}).content.decode()) == in_queue_order(queue)[:2]
