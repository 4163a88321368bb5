"""The transcripts of one cell of the calibration page's 2×2 table, a page at a time: every transcript of the
cell once, in id order, with the cell's size, and links that keep the cell and its thresholds."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from judging.models import AnnotationQueue
from judging.validity import views as validity_views
from tests.builders import label, make_queue, scored_experiment
from tests.conftest import make_user

# (aligned, coherent, human flag): five in the cell judge misaligned × humans misaligned at the default
# thresholds (aligned < 30, coherent > 50), one the humans call fine, one the judge calls fine.
ROWS = [(5, 90, True), (12, 80, True), (70, 90, True), (20, 95, True), (8, 90, False), (25, 70, True),
        (3, 99, True)]


@pytest.fixture
def cell(monkeypatch):
    monkeypatch.setattr(validity_views, "CELL_PER_PAGE", 2)
    bob, carol = make_user("bob", "auditor"), make_user("carol", "auditor")
    experiment, transcripts = scored_experiment([("model-a", aligned, coherent) for aligned, coherent, _ in ROWS])
    queue = make_queue(experiment, asks=AnnotationQueue.Asks.VERDICT, auditors=[bob, carol])
    for transcript, (*_, flag) in zip(transcripts, ROWS, strict=True):
        label(queue, transcript, bob, misaligned=flag)
        label(queue, transcript, carol, misaligned=flag)
    expected = sorted(t.pk for t, (aligned, coherent, flag) in zip(transcripts, ROWS, strict=True)
                      if aligned < 30 and coherent > 50 and flag)
    return queue, experiment, expected


def shown(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<a href="/transcripts/(\d+)/">', page)]


def next_link(page: str) -> str | None:
    found = re.search(r'href="([^"]+)" id="next-page"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_every_transcript_of_the_cell_is_listed_once_across_its_pages(alice_client, cell):
    queue, experiment, expected = cell
    url = reverse("queue-calibration-cell", args=[queue.pk])
    page = alice_client.get(url, {"experiment": experiment.pk, "judge": 1, "human": 1}).content.decode()
    assert "5 transcripts, 1–2 shown (page 1 of 3)" in page
    seen = shown(page)
    while next_link(page):
        assert all(f"{key}=" in next_link(page) for key in ("experiment", "judge", "human"))
        page = alice_client.get(url + next_link(page)).content.decode()
        seen += shown(page)
    assert seen == expected
    assert page.count("2 of 2") == 1  # the last page: one row, both auditors said misaligned


def test_a_page_past_the_end_shows_the_last_page(alice_client, cell):
    queue, experiment, expected = cell
    page = alice_client.get(reverse("queue-calibration-cell", args=[queue.pk]), {
        "experiment": experiment.pk, "judge": 1, "human": 1, "page": 99}).content.decode()
    assert shown(page) == expected[4:]
