"""What the browser's pages read: the transcript page every queue's labels of the transcript at once, the list
page each filter's choices once (validation and the form's selects share them)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.builders import build_corpus, label, make_queue
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_labels_from_several_queues_cost_no_more_queries_than_one(alice_client, bob):
    corpus = build_corpus(bob)
    one, other = corpus.transcripts[-1], corpus.transcripts[-2]  # each labelled once by bob in queue "q"
    for n, username in enumerate(("carol", "dave", "erin")):
        auditor = make_user(username, "auditor")
        queue = make_queue(transcripts=[other], auditors=[auditor], name=f"more-{n}", overlap=1)
        label(queue, other, auditor, categories=[queue.taxonomy.categories.get(key="dangerous_persona")])
    counts = {}
    alice_client.get(reverse("transcript-detail", args=[one.pk]))  # the session's first page does more
    for transcript in (one, other):
        with CaptureQueriesContext(connection) as queries:
            html = alice_client.get(reverse("transcript-detail", args=[transcript.pk])).content.decode()
        counts[transcript.pk] = len(queries)
        shown = [name for name in ("bob", "carol", "dave", "erin") if f"{name}: Adopts a dangerous persona" in html]
        assert shown == (["bob"] if transcript == one else ["bob", "carol", "dave", "erin"])
    assert counts[one.pk] == counts[other.pk]


def test_the_list_reads_each_filters_choices_once_and_keeps_the_chosen_ones(alice_client, db):
    corpus = build_corpus()
    experiment = corpus.experiment
    with CaptureQueriesContext(connection) as queries:
        html = alice_client.get(reverse("transcript-list"), {
            "experiment": experiment.pk, "model": "model-b", "judge_category": "dangerous_persona",
        }).content.decode()
    sql = [query["sql"] for query in queries]
    assert sum(q.startswith('SELECT DISTINCT "transcripts_condition"') for q in sql) == 1  # all its choice columns
    assert sum(q.startswith('SELECT DISTINCT "transcripts_question"') for q in sql) == 1
    assert sum('FROM "judging_personacategory"' in q for q in sql) == 1  # judge and human persona share it
    assert not any(q.startswith("DECLARE") for q in sql)  # the experiments' select: no server-side cursor
    selected = dict(re.findall(r'<select name="(\w+)".*?<option value="([^"]*)" selected>', html))
    assert selected == {"experiment": str(experiment.pk), "model": "model-b", "judge_category": "dangerous_persona",
                        **{name: "" for name in selected if name not in ("experiment", "model", "judge_category")}}
    assert f'<option value="{experiment.pk}" selected>{experiment.name}</option>' in html


def test_the_filter_offers_each_columns_values_once_sorted_without_blank_datasets_or_domains(alice_client, db):
    build_corpus()
    html = alice_client.get(reverse("transcript-list")).content.decode()

    def options(name: str) -> list[str]:
        select = re.search(rf'<select name="{name}".*?</select>', html).group(0)
        return re.findall(r'<option value="([^"]*)"', select)

    assert options("model") == ["", "model-a", "model-b"]
    assert options("dataset") == ["", "insecure"]  # the k=0 conditions have none: not a choice
    assert options("k") == ["", "0", "64"]
    assert options("temperature") == ["", "1.0"]
    assert options("question") == ["", "i_feel_bored", "quick_buck"]
    assert options("domain") == ["", "finance", "leisure"]
