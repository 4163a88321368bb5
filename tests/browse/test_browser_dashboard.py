"""The researcher dashboard in a real browser (Debian's chromium through Playwright)."""

import csv
import io
from pathlib import Path

import pytest

from tests.builders import build_corpus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def row_ids(page) -> list[int]:
    return [int(text) for text in page.locator("#transcript-table tbody td:first-child a").all_inner_texts()]


def wait_for_rows(page, ids: list[int]) -> None:
    expected = ",".join(map(str, ids))
    page.wait_for_function(
        "expected => [...document.querySelectorAll('#transcript-table tbody td:first-child a')]"
        ".map(a => a.textContent).join(',') === expected", arg=expected,
    )


def test_filter_paginate_open_and_export(page, live_server, bob, monkeypatch):
    corpus = build_corpus(bob)
    monkeypatch.setattr("browse.views.PAGE_SIZE", 5)
    model_b = sorted((t.pk for t in corpus.transcripts if t.condition.model_name == "model-b"), reverse=True)

    page.goto(f"{live_server.url}/transcripts/")
    page.select_option("#id_model", "model-b")  # htmx swaps the table and pushes the filter into the URL
    page.wait_for_url("**/transcripts/?model=model-b")  # only the filters in use, so the link can be shared
    wait_for_rows(page, model_b[:5])

    page.click("#next-page")
    page.wait_for_url("**after=*")
    wait_for_rows(page, model_b[5:10])

    page.click(f"text={model_b[6]}")
    page.wait_for_url(f"**/transcripts/{model_b[6]}/?*")
    assert "model-b" in page.locator("dl.facts").inner_text()
    page.click("#next-transcript")  # previous/next stay inside the filter
    page.wait_for_url(f"**/transcripts/{model_b[7]}/?*model=model-b*")
    page.click("#prompt summary")
    assert page.locator("#prompt .turn").count() >= 1

    page.go_back()
    page.go_back()
    with page.expect_download() as download:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert sorted(int(r["id"]) for r in rows) == sorted(model_b)
    assert page.dialogs == []


def test_hostile_answer_renders_inert(page, live_server, db):
    corpus = build_corpus()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/transcripts/{corpus.hostile.pk}/")
    answer = page.locator("#answer")
    assert "<script>alert(1)</script>" in answer.inner_text()  # shown as text
    assert answer.locator("script, img, iframe, [onclick], [onerror], div").count() == 0
    assert answer.locator("a[href^='javascript']").count() == 0
    assert page.locator("#reasoning script").count() == 0
    assert answer.locator("pre code").inner_text().strip() == 'print("code block")'
    page.wait_for_timeout(300)
    assert page.dialogs == [] and errors == []


def test_charts_draw_under_the_content_security_policy(page, live_server, db):
    build_corpus()
    page.goto(f"{live_server.url}/charts/?model=model-b")
    for name in ("misaligned-vs-k", "aligned-vs-coherent", "misaligned-by-domain", "persona-shares"):
        page.wait_for_selector(f"#chart-{name}[data-rendered='true']", timeout=15000)
    assert page.locator("#chart-misaligned-vs-k .modebar-btn[data-title='Download plot as SVG']").count() == 1
