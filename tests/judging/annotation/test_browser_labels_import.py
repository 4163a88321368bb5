"""A labels CSV with bad rows is refused whole, its bad rows named (file, line, field), and the chosen file stays
chosen on the queue page, so the researcher fixes it and imports again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from judging.models import Label
from tests.builders import judged_transcripts, make_queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_queue_page_lists_bad_label_rows_and_keeps_the_chosen_file(page, bob, tmp_path):
    experiment, transcripts = judged_transcripts(3)
    queue = make_queue(experiment, auditors=[bob], name="personas")
    first, second, third = (t.pk for t in transcripts)
    path = tmp_path / "labels.csv"
    path.write_text("transcript_id,annotator,label\n"
                    f"{first},bob,follows_pattern\n{second},bob,no_such_category\n{third},mallory,follows_pattern\n")
    page.goto(f"{page.base}{reverse('queue-detail', args=[queue.pk])}")
    page.set_input_files("input[name=file]", str(path))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#labels-import-report .import-problems li")
    assert [li.inner_text() for li in page.locator(".import-problems li").all()] == [
        f"labels.csv, line 3, field \"label\": 'no_such_category' is not a category of {queue.taxonomy}",
        "labels.csv, line 4, field \"annotator\": no user named 'mallory'",
    ]
    assert page.evaluate("document.querySelector('input[name=file]').files[0].name") == "labels.csv"
    assert not Label.objects.exists()
    # Fixed and chosen again: imported, and the queue page says so.
    path.write_text(f"transcript_id,annotator,label\n{first},bob,follows_pattern\n{second},bob,follows_pattern\n")
    page.set_input_files("input[name=file]", str(path))
    with page.expect_navigation():
        page.get_by_role("button", name="Import").click()
    page.wait_for_selector("text=Imported labels: 2 new, 0 replaced.")
    assert Label.objects.filter(auditor=bob).count() == 2
