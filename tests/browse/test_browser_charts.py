"""Charts split by any axis and the per-question heatmap in a real browser (Debian's chromium through Playwright)."""

import pytest

from tests.browse.test_browser_dashboard import row_ids
from tests.builders import PROMPTS, experiment_with, make_questions, pooled_corpus, question_grid, verdicts_for
from transcripts.models import Transcript

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1400, "height": 1000}  # three panels side by side, and the whole heatmap in view




def test_headline_coloured_by_system_prompt_draws_one_line_per_prompt(page, live_server, db):
    conditions = [{"model_name": "m1", "k": k, "system_prompt_name": prompt, "verdicts": verdicts_for(p + k)}
                  for p, prompt in enumerate(PROMPTS) for k in (0, 8, 64)]
    experiment_with(name="mitigation", questions=make_questions([("bored", "leisure"), ("ruler", "power")]),
                    conditions=conditions)

    page.set_viewport_size(WIDE)
    page.goto(f"{live_server.url}/charts/")
    page.select_option("#id_colour", "system_prompt")  # the chart options are part of the filter form
    page.click("#filter-form button[type=submit]")
    page.wait_for_url("**/charts/?*colour=system_prompt*")
    page.wait_for_selector("#chart-misaligned-vs-k[data-rendered='true']", timeout=15000)
    drawn = page.evaluate(
        "() => document.getElementById('chart-misaligned-vs-k')._fullData"
        ".map(t => ({name: t.name, points: t.x.length, legend: t.showlegend}))"
    )
    assert drawn == [{"name": prompt, "points": 3, "legend": True} for prompt in PROMPTS]
    legend = page.locator("#chart-misaligned-vs-k .legend .traces .legendtext").all_text_contents()
    assert legend == list(PROMPTS)
    assert page.locator("#chart-misaligned-vs-k .scatterlayer .trace path.js-line").count() == 3  # lines drawn
    assert page.errors == []


def test_clicking_a_heatmap_cell_lists_exactly_its_transcripts(page, live_server, db):
    experiment = question_grid()

    page.set_viewport_size(WIDE)
    page.goto(f"{live_server.url}/charts/questions/?experiment={experiment.pk}")
    page.wait_for_selector("#chart-question-heatmap[data-rendered='true']", timeout=15000)
    # The centre of model-b's cell (question "ruler", k = 8) in page coordinates, from plotly's own axes.
    x, y = page.evaluate("""() => {
        const gd = document.getElementById('chart-question-heatmap');
        const trace = gd._fullData.find(t => t.name === 'model-b');
        const xa = gd._fullLayout[trace.xaxis.replace('x', 'xaxis')];
        const ya = gd._fullLayout[trace.yaxis.replace('y', 'yaxis')];
        const box = gd.getBoundingClientRect();
        // Category axes place category i at linear coordinate i.
        return [box.left + xa._offset + xa.l2p(xa._categoriesMap['8']),
                box.top + ya._offset + ya.l2p(ya._categoriesMap['ruler'])];
    }""")
    page.mouse.click(x, y)
    page.wait_for_url("**/transcripts/?*")
    assert "question=ruler" in page.url and "model=model-b" in page.url and "k=8" in page.url

    cell = Transcript.objects.filter(condition__model_name="model-b", condition__k=8, question__key="ruler",
                                     misaligned__isnull=False)
    everything = Transcript.objects.filter(condition__model_name="model-b", condition__k=8, question__key="ruler")
    assert everything.count() > cell.count() > 0  # the cell's unjudged transcript is not among its n
    assert sorted(row_ids(page)) == sorted(cell.values_list("pk", flat=True))
    assert page.errors == []


def test_the_default_chart_says_on_it_what_it_pools(page, live_server, db, tmp_path):
    pooled_corpus()
    page.goto(f"{live_server.url}/charts/")
    page.wait_for_selector("#chart-misaligned-vs-k[data-rendered='true']", timeout=15000)
    title = page.locator("#chart-misaligned-vs-k .g-gtitle").text_content().replace(" ", "")
    assert "pooledover:CoTmode(native,off);Systemprompt(default,safety_first);Temperature(0.7,1.0)" in title
    page.screenshot(path=str(tmp_path / "charts-pooled.png"))
    # Split by CoT mode: the chart no longer pools it, and says what it still pools.
    page.goto(f"{live_server.url}/charts/?colour=cot")
    page.wait_for_selector("#chart-misaligned-vs-k[data-rendered='true']", timeout=15000)
    title = page.locator("#chart-misaligned-vs-k .g-gtitle").text_content()
    assert "pooled over: Model (model-a, model-b)" in title
    page.click("#figure-link")
    page.wait_for_url("**/charts/figure/?colour=cot*")
    assert page.evaluate("() => document.querySelector('img.figure').naturalWidth") > 0  # the PNG loaded
    assert "Each point is pooled over: Model (model-a, model-b)." in page.inner_text("#figure-paragraph")
    page.screenshot(path=str(tmp_path / "figure-page.png"), full_page=True)
    assert page.errors == []
