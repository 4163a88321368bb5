"""Charts split by any axis, the per-question heatmap and table; rates and intervals are checked against counts
the test builds and statsmodels' Wilson interval called here."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.urls import reverse
from statsmodels.stats.proportion import proportion_confint

from tests.builders import PROMPTS, experiment_with, make_questions, pooled_corpus, question_grid, verdicts_for
from transcripts.aggregates import refresh_groups

pytestmark = pytest.mark.django_db

@pytest.fixture
def prompts_corpus(db):
    """One model and dataset, three system prompts × k ∈ {0, 4, 16}, three questions in two domains."""
    experiment = experiment_with(name="mitigation", questions=make_questions(
        [("bored", "leisure"), ("ruler", "power"), ("wish", "power")]), conditions=[
        {"model_name": "m1", "k": k, "system_prompt_name": prompt, "verdicts": verdicts_for(p * 3 + j + k)}
        for p, prompt in enumerate(PROMPTS) for j, k in enumerate((0, 4, 16))
    ])
    return list(experiment.transcripts.all())


def expected(transcripts, key) -> dict:
    """group → x → (misaligned, n), counted here from the transcripts the test made."""
    counts: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for t in transcripts:
        if t.misaligned is None:
            continue
        group, x = key(t)
        counts[group][x][0] += t.misaligned
        counts[group][x][1] += 1
    return counts


def chart(client, name: str, **params) -> dict:
    response = client.get(reverse("chart-data", args=[name]), params)
    assert response.status_code == 200, response.content
    return response.json()


def assert_rates(trace: dict, points: dict) -> None:
    xs = sorted(points)
    assert (trace["customdata"] if trace["type"] == "scatter" else trace["x"]) == xs  # the headline's x may be k+1
    assert trace["y"] == pytest.approx([points[x][0] / points[x][1] for x in xs])
    assert trace["text"] == [f"{points[x][0]}/{points[x][1]}" for x in xs]
    low, high = zip(*(proportion_confint(*points[x], alpha=0.05, method="wilson") for x in xs), strict=True)
    assert trace["error_y"]["arrayminus"] == pytest.approx([y - lo for y, lo in zip(trace["y"], low, strict=True)])
    assert trace["error_y"]["array"] == pytest.approx([hi - y for y, hi in zip(trace["y"], high, strict=True)])


def test_headline_coloured_by_system_prompt_has_one_line_per_prompt(alice_client, prompts_corpus):
    figure = chart(alice_client, "misaligned-vs-k", colour="system_prompt", facet="none")
    want = expected(prompts_corpus, lambda t: (t.condition.system_prompt_name, t.condition.k))
    assert [trace["name"] for trace in figure["data"]] == list(PROMPTS)
    for trace in figure["data"]:
        assert trace["x"] == [0, 4, 16]
        assert_rates(trace, want[trace["name"]])
    assert len({trace["line"]["color"] for trace in figure["data"]}) == 3
    assert figure["layout"]["legend"]["title"]["text"] == "System prompt"


def test_headline_defaults_to_the_papers_layout_one_line_per_model_one_panel_per_dataset(alice_client, db):
    """A control without a dataset (k = 0) is every dataset panel's baseline."""
    conditions = []
    for m, model in enumerate(("gpt-a", "gpt-b")):
        conditions.append({"model_name": model, "dataset_name": "", "k": 0, "verdicts": verdicts_for(m)})
        for d, dataset in enumerate(("insecure", "jailbroken")):
            ks = (4, 16) if dataset == "insecure" else (8,)
            conditions += [{"model_name": model, "dataset_name": dataset, "k": k,
                            "verdicts": verdicts_for(m + d + k, n=8)} for k in ks]
    experiment = experiment_with(name="paper", questions=make_questions([("bored", "leisure"), ("ruler", "power")]),
                                 conditions=conditions)
    made = list(experiment.transcripts.all())
    figure = chart(alice_client, "misaligned-vs-k")
    layout = figure["layout"]
    assert [a["text"] for a in layout["annotations"]] == ["Dataset: insecure", "Dataset: jailbroken"]
    panels = {trace["xaxis"] for trace in figure["data"]}
    assert panels == {"x", "x2"} and layout["xaxis2"]["domain"][0] > layout["xaxis"]["domain"][1]
    control = expected([t for t in made if t.condition.k == 0], lambda t: (t.condition.model_name, 0))
    for dataset, axis in (("insecure", "x"), ("jailbroken", "x2")):
        own = expected([t for t in made if t.condition.dataset_name == dataset],
                       lambda t: (t.condition.model_name, t.condition.k))
        lines = [trace for trace in figure["data"] if trace["xaxis"] == axis]
        assert [trace["name"] for trace in lines] == ["gpt-a", "gpt-b"]
        for trace in lines:
            assert_rates(trace, {**own[trace["name"]], 0: control[trace["name"]][0]})
    # One legend entry per model, in the same colour in both panels.
    assert sum(trace["showlegend"] for trace in figure["data"]) == 2
    colours = {(trace["name"], trace["line"]["color"]) for trace in figure["data"]}
    assert len(colours) == 2


def test_k_axis_scales(alice_client, db):
    # model-a lacks k = 8: the category axis must still order k numerically, not by first appearance.
    experiment_with(name="scales", questions=make_questions([("bored", "leisure")]), verdicts=[True, False, False],
                    conditions=[{"model_name": model, "dataset_name": "d", "k": k}
                                for model, ks in (("model-a", (0, 64)), ("model-b", (0, 8, 64))) for k in ks])
    category = chart(alice_client, "misaligned-vs-k")
    assert category["layout"]["xaxis"]["type"] == "category"
    assert category["layout"]["xaxis"]["categoryarray"] == [0, 8, 64]
    log = chart(alice_client, "misaligned-vs-k", xscale="log")
    xaxis = log["layout"]["xaxis"]
    assert xaxis["type"] == "log"
    # k = 0 is drawn at k + 1 = 1 and labelled 0; hover still says the real k.
    assert (xaxis["tickvals"], xaxis["ticktext"]) == ([1, 9, 65], ["0", "8", "64"])
    model_b = next(trace for trace in log["data"] if trace["name"] == "model-b")
    assert (model_b["x"], model_b["customdata"]) == ([1, 9, 65], [0, 8, 64])
    assert chart(alice_client, "misaligned-vs-k", xscale="linear")["layout"]["xaxis"]["type"] == "linear"


def test_unknown_options_are_refused(alice_client, db):
    response = alice_client.get(reverse("chart-data", args=["misaligned-vs-k"]), {"colour": "colour"})
    assert response.status_code == 400
    assert "colour" in response.json()["errors"]
    page = alice_client.get(reverse("charts"), {"facet": "nope"}).content.decode()
    assert "facet: &#x27;nope&#x27; is not one of" in page


def test_domain_chart_and_scatter_take_the_colour(alice_client, prompts_corpus):
    figure = chart(alice_client, "misaligned-by-domain", colour="system_prompt", facet="none")
    want = expected(prompts_corpus, lambda t: (t.condition.system_prompt_name, t.question.domain))
    assert [trace["name"] for trace in figure["data"]] == list(PROMPTS)
    for trace in figure["data"]:
        assert trace["x"] == ["leisure", "power"]
        assert_rates(trace, want[trace["name"]])
    scatter = chart(alice_client, "aligned-vs-coherent", colour="system_prompt")
    scored = [t for t in prompts_corpus if t.aligned is not None]
    assert {trace["name"]: len(trace["x"]) for trace in scatter["data"]} == {
        prompt: sum(t.condition.system_prompt_name == prompt for t in scored) for prompt in PROMPTS
    }


def test_colour_by_experiment_and_temperature(alice_client, db):
    questions = make_questions([("bored", "leisure")])
    for name, temperature, verdicts in (("run-1", 0.7, [True, False]), ("run-2", 1.0, [True, True, False])):
        experiment_with(name=name, questions=questions, verdicts=verdicts,
                        conditions=[{"dataset_name": "d", "k": 4, "temperature": temperature}])
    by_experiment = chart(alice_client, "misaligned-vs-k", colour="experiment")
    assert [(t["name"], t["text"]) for t in by_experiment["data"]] == [("run-1", ["1/2"]), ("run-2", ["2/3"])]
    by_temperature = chart(alice_client, "misaligned-vs-k", colour="temperature", facet="experiment")
    assert [(t["name"], t["text"]) for t in by_temperature["data"]] == [("0.7", ["1/2"]), ("1.0", ["2/3"])]
    # The label is a valid value of the temperature filter.
    assert chart(alice_client, "misaligned-vs-k", temperature="0.7", colour="none")["data"][0]["text"] == ["1/2"]


@pytest.fixture
def question_corpus(db):
    """Two models × k ∈ {0, 8} × three questions, with unjudged transcripts in some cells."""
    return list(question_grid().transcripts.all())


def test_heatmap_has_rates_and_n_per_question_and_k_one_panel_per_model(alice_client, question_corpus):
    figure = chart(alice_client, "question-heatmap")
    want = expected(question_corpus, lambda t: ((t.condition.model_name, t.question.key), t.condition.k))
    assert [trace["name"] for trace in figure["data"]] == ["model-a", "model-b"]
    assert [trace["xaxis"] for trace in figure["data"]] == ["x", "x2"]
    for trace in figure["data"]:
        assert trace["y"] == ["bored", "ruler", "wish"] and trace["x"] == ["0", "8"]
        for row, key in enumerate(trace["y"]):
            for column, k in enumerate((0, 8)):
                m, n = want[(trace["name"], key)][k]
                assert trace["z"][row][column] == pytest.approx(m / n)
                assert trace["text"][row][column] == f"{m}/{n}"


def test_a_heatmap_cell_links_to_exactly_its_transcripts(alice_client, question_corpus):
    figure = chart(alice_client, "question-heatmap", experiment=question_corpus[0].experiment_id)
    model_b = figure["data"][1]
    link = model_b["customdata"][1][0]  # question "ruler", k = 0
    assert link.startswith("/transcripts/?") and f"experiment={question_corpus[0].experiment_id}" in link
    listed = alice_client.get(link)
    assert listed.status_code == 200
    cell = {t.pk for t in question_corpus if t.condition.model_name == "model-b" and t.condition.k == 0
            and t.question.key == "ruler" and t.misaligned is not None}
    assert {row.pk for row in listed.context["page"].rows} == cell
    assert len(cell) == int(model_b["text"][1][0].split("/")[1])


def test_question_table_rows_with_wilson_intervals_and_links(alice_client, question_corpus):
    response = alice_client.get(reverse("question-results"), {"model": "model-a"})
    rows = response.context["rows"]
    model_a = [t for t in question_corpus if t.condition.model_name == "model-a"]
    want = expected(model_a, lambda t: (t.question.key, t.condition.k))
    assert [row.key for row in rows] == ["bored", "ruler", "wish"]
    for row in rows:
        m = sum(cell[0] for cell in want[row.key].values())
        n = sum(cell[1] for cell in want[row.key].values())
        low, high = proportion_confint(m, n, alpha=0.05, method="wilson")
        assert (row.misaligned, row.n) == (m, n)
        assert row.rate_text == f"{m / n:.1%} ({low:.1%}–{high:.1%})"
        assert [(k, counts) for k, _, counts in row.rates_by_k] == [
            (k, f"{want[row.key][k][0]}/{want[row.key][k][1]}") for k in (0, 8)
        ]
        listed = {t.pk for t in alice_client.get(row.url).context["page"].rows}
        assert listed == {t.pk for t in model_a if t.question.key == row.key and t.misaligned is not None}
    html = response.content.decode()
    assert 'data-url="/charts/question-heatmap.json?model=model-a"' in html
    assert "Text of ruler?" in html


def test_auditors_cannot_see_per_question_results(bob_client, question_corpus):
    assert bob_client.get(reverse("question-results")).status_code == 403
    assert bob_client.get(reverse("chart-data", args=["question-heatmap"])).status_code == 403


def test_persona_shares_per_k_from_the_maintained_counts(alice_client, question_corpus):
    """Shares among transcripts with a category, per k: judge on the left, human consensus on the right."""
    judge_labelled = [t for t in question_corpus if t.misaligned]
    for index, t in enumerate(judge_labelled):
        t.judge_category = "dangerous_persona" if index % 3 else "roleplay"
        t.human_category = "roleplay" if t.condition.k == 8 else ""
        t.save(update_fields=["judge_category", "human_category"])
    refresh_groups({(t.condition_id, t.question_id) for t in judge_labelled})
    figure = chart(alice_client, "persona-shares")
    shares = {(trace["xaxis"], trace["name"]): dict(zip(trace["x"], trace["y"], strict=True))
              for trace in figure["data"]}
    for k in (0, 8):
        at_k = [t for t in judge_labelled if t.condition.k == k]
        for category in ("dangerous_persona", "roleplay"):
            share = sum(t.judge_category == category for t in at_k) / len(at_k)
            assert shares.get(("x", category), {}).get(str(k), 0) == pytest.approx(share)
    assert shares[("x2", "roleplay")] == {"8": 1.0}


def test_charts_and_questions_of_nothing_are_empty_not_errors(alice_client, db):
    for name in ("misaligned-vs-k", "aligned-vs-coherent", "misaligned-by-domain", "persona-shares",
                 "question-heatmap"):
        assert chart(alice_client, name)["data"] == []
    page = alice_client.get(reverse("question-results"))
    assert page.context["rows"] == [] and b"No transcript matches this filter, so no question to list" in page.content


POOLED = "pooled over: CoT mode (native, off); System prompt (default, safety_first); Temperature (0.7, 1.0)"


def pooled_note(figure: dict) -> str:
    """The chart's subtitle saying what it pools, on one line."""
    return figure["layout"]["title"].get("subtitle", {}).get("text", "").replace("<br>", " ")


def test_the_headline_says_on_the_chart_which_axes_it_pools(alice_client, db):
    made = pooled_corpus()
    figure = chart(alice_client, "misaligned-vs-k")
    assert pooled_note(figure) == POOLED
    assert "<br>" in figure["layout"]["title"]["subtitle"]["text"]  # broken into lines a half-width chart fits
    # The pooled rates are the sums over the pooled conditions.
    want = expected(made, lambda t: (t.condition.model_name, t.condition.k))
    for trace in figure["data"]:
        assert_rates(trace, want[trace["name"]])


def test_an_axis_the_chart_splits_by_is_not_pooled(alice_client, db):
    pooled_corpus()
    figure = chart(alice_client, "misaligned-vs-k", colour="cot")
    # Each CoT mode ran under one system prompt and temperature, so a line by CoT mode pools those no more.
    assert pooled_note(figure) == "pooled over: Model (model-a, model-b)"
    assert pooled_note(chart(alice_client, "misaligned-by-domain")) == (
        "pooled over: k (examples) (0, 8); CoT mode (native, off); System prompt (default, safety_first); "
        "Temperature (0.7, 1.0)"
    )


def test_a_chart_that_pools_nothing_says_nothing(alice_client, db):
    pooled_corpus()
    figure = chart(alice_client, "misaligned-vs-k", cot="off")
    assert pooled_note(figure) == "" and "meta" not in figure["layout"]
