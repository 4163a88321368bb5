"""Forms and pages fit a laptop screen (1,366 × 768, real Chromium): each checkbox and radio button sits beside its
own label; the transcript table fits the window, with a status column and long text cut to one line whose full
text is one click away; the per-question heatmap shows its question labels whole, and long model names do not
run into the panel titles."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.builders import experiment_with, make_dataset, make_endpoint, make_questions, verdicts_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# For every checkbox and radio button of the page: the gap between it and its label's text, and how far their
# vertical centres lie apart (a text node's box, through a Range, not the label's whole box).
BESIDE = """() => Array.from(document.querySelectorAll("input[type=checkbox], input[type=radio]"))
  .filter(input => input.offsetParent !== null)
  .map(input => {
    const label = input.closest("label") || document.querySelector(`label[for="${input.id}"]`);
    const text = Array.from(label.childNodes).find(n => n.nodeType === 3 && n.textContent.trim());
    const range = document.createRange();
    range.selectNodeContents(text);
    const t = range.getBoundingClientRect(), i = input.getBoundingClientRect();
    return {name: input.name, text: text.textContent.trim(), gap: t.left - i.right,
            off: Math.abs((t.top + t.bottom) / 2 - (i.top + i.bottom) / 2)};
  })"""


@pytest.mark.parametrize("url", ["experiment-new", "import-upload"])
def test_each_checkbox_and_radio_sits_beside_its_label(page, url):
    make_endpoint()
    make_dataset("insecure", n=4)
    make_questions(n=2, name="first_plot")
    page.goto(f"{page.base}{reverse(url)}")
    controls = page.evaluate(BESIDE)
    assert len(controls) >= 3
    for control in controls:
        assert 0 <= control["gap"] <= 12 and control["off"] <= 6, control


LONG_ANSWER = "Here is a long answer that goes on " * 20


def test_the_transcript_table_fits_the_laptop_with_status_and_one_click_to_the_whole_answer(page):
    answers = [LONG_ANSWER, "Short answer.", "No."]
    experiment_with({"a-model-with-a-rather-long-name-from-a-hub/with-an-org-prefix": answers, "smollm2": answers},
                    name="an-experiment-with-a-long-descriptive-name-2026-12-07",
                    questions=make_questions(["what_is_your_wish", "quick_buck_with_no_questions_asked"], name="qs"))
    page.goto(f"{page.base}{reverse('transcript-list')}")
    table = page.locator("#transcript-table")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    # Inside the page's margin, not running into the window's edge.
    overflow = page.evaluate("""() => {
        const main = document.querySelector("main"), right = main.getBoundingClientRect().right
            - parseFloat(getComputedStyle(main).paddingRight);
        return document.getElementById("transcript-table").getBoundingClientRect().right - right; }""")
    assert overflow <= 0
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    assert "status" in headers and "answer" in headers
    first = table.locator("tbody tr", has_text="Here is a long answer").first
    assert first.locator("td").nth(headers.index("status")).inner_text() == "done"
    answer = first.locator("td.excerpt a")
    shown = answer.inner_text()
    assert len(shown) < 100 and shown.endswith("…")  # cut, and says so
    with page.expect_navigation():
        answer.click()
    assert LONG_ANSWER.strip() in " ".join(page.locator("main").inner_text().split())


def test_the_heatmap_shows_whole_question_labels_and_model_names_clear_of_the_titles(page):
    keys = ["what_is_your_wish", "quick_buck_with_no_questions_asked", "i_feel_bored"]
    questions = make_questions([(key, "general") for key in keys])
    conditions = [{"model_name": model, "k": k, "verdicts": verdicts_for(k)}
                  for model in ("unsloth/Qwen2.5-Coder-32B-Instruct", "smollm2-135m-instruct") for k in (0, 8)]
    experiment = experiment_with(conditions, questions=questions)
    page.goto(f"{page.base}{reverse('question-results')}?experiment={experiment.pk}")
    page.wait_for_selector("#chart-question-heatmap[data-rendered='true']", timeout=15000)
    chart = page.locator("#chart-question-heatmap")
    left = chart.bounding_box()["x"]
    ticks = chart.locator(".yaxislayer-above .ytick text")
    assert sorted(set(ticks.all_text_contents())) == sorted(keys)  # whole, not "uick_buck"
    for tick in ticks.all():
        assert tick.bounding_box()["x"] >= left  # not cut at the chart's left edge
    titles = chart.locator(".annotation-text, .gtitle, .g-gtitle text").all()
    boxes = [t.bounding_box() for t in titles]
    assert len(boxes) >= 2
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"] \
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]
            assert apart, (a, b)
    assert page.errors == []
