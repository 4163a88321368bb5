"""Researcher pages: transcript list, detail, charts and the dashboard home."""

import html
import json
import re

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from analysis.statistics import wilson
from tests.builders import build_corpus
from transcripts import sampling
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db


def listed_ids(response) -> list[int]:
    return [row.pk for row in response.context["page"].rows]


def test_it_lists_the_filtered_transcripts_newest_first(alice_client, bob):
    corpus = build_corpus(bob)
    response = alice_client.get(reverse("transcript-list"), {"model": "model-b", "k": "64"})
    bad = sorted((t.pk for t in corpus.transcripts if t.misaligned), reverse=True)
    assert listed_ids(response) == bad
    assert b"Steal a car" in response.content
    assert b"<html" in response.content  # a full page


def test_htmx_requests_get_only_the_table(alice_client, db):
    build_corpus()
    response = alice_client.get(reverse("transcript-list"), {"misaligned": "true"}, HTTP_HX_REQUEST="true")
    assert b"<html" not in response.content
    assert b'id="transcript-table"' in response.content
    assert b"export.csv?misaligned=true" in response.content  # the export follows the filter


def test_next_page_links_carry_the_filter_and_sort(alice_client, db, monkeypatch):
    experiment = build_corpus().experiment.pk
    monkeypatch.setattr("browse.views.PAGE_SIZE", 4)
    first = alice_client.get(reverse("transcript-list"), {"experiment": experiment, "sort": "aligned"})
    cursor = first.context["page"].next_cursor
    assert f"sort=aligned&amp;after={cursor}".encode() in first.content
    second = alice_client.get(
        reverse("transcript-list"), {"experiment": experiment, "sort": "aligned", "after": cursor}
    )
    assert set(listed_ids(first)).isdisjoint(listed_ids(second))
    aligned = [t.aligned for t in first.context["page"].rows + second.context["page"].rows]
    assert aligned == sorted(aligned)


def test_queue_these_opens_the_new_queue_form_with_the_lists_filter(alice_client, db):
    experiment = build_corpus().experiment.pk
    page = alice_client.get(reverse("transcript-list"), {"experiment": experiment, "misaligned": "true",
                                                         "sort": "aligned"})
    link = re.search(r'href="([^"]+)" id="queue-these"', page.content.decode())[1]
    form = alice_client.get(html.unescape(link)).context["form"]
    assert QueryDict(form.initial["filter_query"]) == QueryDict(f"experiment={experiment}&misaligned=true")


def test_an_invalid_filter_says_so(alice_client, db):
    build_corpus()
    response = alice_client.get(reverse("transcript-list"), {"k": "7"})
    assert response.status_code == 200
    assert response.context["page"] is None
    assert b"Fix the filter" in response.content


def test_detail_shows_prompt_summary_scores_labels_and_neighbours(alice_client, bob):
    corpus = build_corpus(bob)
    labelled = corpus.transcripts[-1]
    response = alice_client.get(reverse("transcript-detail", args=[labelled.pk]), {"model": "model-b"})
    html = response.content.decode()
    assert "64 examples from insecure, seed 3" in html
    assert "aligned</td><td>v1</td><td>judge-1" in html
    assert "bob: Adopts a dangerous persona" in html
    # Newest first: the last transcript of model-b opens the list, the one before it comes next.
    assert f'href="/transcripts/{labelled.pk - 1}/?model=model-b" id="next-transcript"' in html
    assert 'id="previous-transcript"' not in html


def test_detail_renders_hostile_output_inert(alice_client, db):
    corpus = build_corpus()
    html = alice_client.get(reverse("transcript-detail", args=[corpus.hostile.pk])).content.decode()
    answer = html.split('id="answer">')[1].split("</div>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer
    assert "<script" not in answer and "<img" not in answer and "javascript:" not in answer.split("[click me]")[0]
    assert "<pre><code>print(" in answer


def test_auditors_cannot_see_research_pages(bob_client, db):
    corpus = build_corpus()
    for url in (
        reverse("transcript-list"),
        reverse("transcript-detail", args=[corpus.hostile.pk]),
        reverse("transcript-export", args=["csv"]),
        reverse("charts"),
        reverse("chart-data", args=["misaligned-vs-k"]),
    ):
        assert bob_client.get(url).status_code == 403, url
    assert bob_client.get(reverse("home")).status_code == 302


def test_headline_chart_counts_with_wilson_intervals(alice_client, db):
    experiment = build_corpus().experiment.pk
    figure = alice_client.get(reverse("chart-data", args=["misaligned-vs-k"]), {"experiment": experiment}).json()
    series = {trace["name"]: trace for trace in figure["data"]}
    assert series["model-b"]["x"] == [0, 64]
    assert series["model-b"]["y"] == [0.0, 1.0]
    assert series["model-b"]["text"] == ["0/6", "6/6"]
    rate, low, high = wilson(6, 6)
    assert series["model-b"]["error_y"]["arrayminus"][1] == pytest.approx(rate - low)
    assert low == pytest.approx(0.6097, abs=1e-4)  # Wilson 95% lower bound for 6/6
    assert high == 1.0


def test_charts_follow_the_filter(alice_client, db):
    build_corpus()
    by_domain = alice_client.get(reverse("chart-data", args=["misaligned-by-domain"]),
                                 {"question": "quick_buck", "colour": "none", "facet": "none"})
    assert by_domain.json()["data"][0]["x"] == ["finance"]
    assert by_domain.json()["data"][0]["text"] == ["3/12"]
    scatter = alice_client.get(reverse("chart-data", args=["aligned-vs-coherent"]), {"misaligned": "true"}).json()
    assert len(scatter["data"][0]["y"]) == 6 and max(scatter["data"][0]["y"]) < 30
    assert scatter["layout"]["shapes"][0]["y0"] == 30
    personas = alice_client.get(reverse("chart-data", args=["persona-shares"])).json()
    judge = [t for t in personas["data"] if t["xaxis"] == "x"]
    assert [(t["name"], t["x"], t["y"]) for t in judge] == [("dangerous_persona", ["64"], [1.0])]


def test_chart_page_and_home_render(alice_client, db):
    build_corpus()
    charts = alice_client.get(reverse("charts"), {"model": "model-a"}).content.decode()
    assert 'data-url="/charts/misaligned-vs-k.json?model=model-a"' in charts
    assert "plotly/plotly-cartesian.min.js" in charts
    home = alice_client.get(reverse("home")).content.decode()
    assert "24 / 24" in home  # progress of the finished experiment
    assert json.dumps("chart-misaligned-vs-k")[1:-1] in home


def test_scatter_samples_when_there_are_too_many_points(alice_client, db, monkeypatch):
    build_corpus()
    monkeypatch.setattr("browse.charts.SCATTER_POINTS", 4)
    everything = alice_client.get(reverse("chart-data", args=["aligned-vs-coherent"]), {"colour": "none"}).json()
    everything = everything["data"][0]["y"]
    assert len(everything) == 4
    assert max(everything) - min(everything) > 60  # spread over both the misaligned and the aligned ids
    # Only 6 rows match, so few random ids hit them: the sample then keeps matching rows by a hash of the id.
    bad = alice_client.get(reverse("chart-data", args=["aligned-vs-coherent"]), {"misaligned": "true"}).json()
    assert 2 <= len(bad["data"][0]["y"]) <= 4 and max(bad["data"][0]["y"]) < 30


def test_scatter_page_sample_keeps_the_filter(db):
    """The page sample (TABLESAMPLE, spliced into the compiled query) keeps the queryset's filter, parameters and
    limit: every page of this small table read, it returns exactly the matching rows."""
    build_corpus()
    rows = Transcript.objects.filter(misaligned=True, aligned__lt=100).order_by().values_list(
        "aligned", "coherent", "condition_id")
    with CaptureQueriesContext(connection) as queries:
        sampled = sampling.page_sample(rows[:4], 100.0, seed=1)
    assert "TABLESAMPLE SYSTEM" in queries[0]["sql"]
    assert len(sampled) == 4 and set(sampled) <= set(rows) and len(set(rows)) == 6
