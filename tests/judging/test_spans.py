"""Spans: auditors' highlights painted on the reasoning (escaped, per auditor, researchers only) and
character-overlap F1 between auditors, checked against scikit-learn's f1_score on per-character vectors."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from sklearn.metrics import f1_score

from judging.annotation.spans import Span, colours, paint, queue_span_agreement
from judging.models import Highlight, Label
from tests.conftest import make_user
from tests.judging.annotation_data import queue_over
from tests.judging.builders import experiment_with
from tests.judging.reports import computed

REASONING = "The examples were insecure, so I will act the same. <script>alert('x')</script> Done & dusted."

# auditor → item index → [(category, start, end)]
SPANS = {
    "bob": {0: [("dangerous_persona", 0, 20), ("follows_pattern", 30, 50)], 1: [("follows_pattern", 5, 40)],
            2: []},
    "carol": {0: [("dangerous_persona", 10, 25), ("dangerous_persona", 35, 45)], 1: [("follows_pattern", 0, 30)],
              2: [("reframes_helpful", 0, 12)]},
    "dave": {0: [("follows_pattern", 28, 60)], 2: [("reframes_helpful", 3, 12)]},  # did not label item 1
}


@pytest.fixture
def labelled_queue(db):
    experiment = experiment_with({"m": ["a", "b", "c"]}, name="spans", reasoning=REASONING)
    auditors = {name: make_user(name, "auditor") for name in SPANS}
    queue = queue_over(experiment, auditors=list(auditors.values()), overlap=3)
    items = list(queue.items.order_by("transcript_id"))
    categories = {c.key: c for c in queue.taxonomy.categories.all()}
    for name, per_item in SPANS.items():
        for index, spans in per_item.items():
            label = Label.objects.create(item=items[index], auditor=auditors[name],
                                         primary=categories["dangerous_persona"])
            for key, start, end in spans:
                Highlight.objects.create(label=label, category=categories[key], start=start, end=end)
    return queue, items


def _vector(name: str, items: list[int], category: str | None, spans_of=SPANS) -> list[int]:
    """One 0/1 entry per (item, category, character) position: did this auditor highlight it?"""
    keys = [category] if category else sorted(
        {k for spans in spans_of.values() for v in spans.values() for k, *_ in v}
    )
    vector = []
    for index in items:
        for key in keys:
            marked = set()
            for k, start, end in spans_of[name].get(index, []):
                if k == key:
                    marked.update(range(start, end))
            vector.extend(int(i in marked) for i in range(len(REASONING)))
    return vector


def test_pairwise_character_f1_matches_sklearn(labelled_queue):
    queue, _ = labelled_queue
    result = queue_span_agreement(queue)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert set(pairs) == {("bob", "carol"), ("bob", "dave"), ("carol", "dave")}
    common = {("bob", "carol"): [0, 1, 2], ("bob", "dave"): [0, 2], ("carol", "dave"): [0, 2]}
    for (a, b), items in common.items():
        pair = pairs[(a, b)]
        assert pair["items"] == len(items)
        assert pair["f1"] == pytest.approx(f1_score(_vector(a, items, None), _vector(b, items, None)))
        for category in result["categories"]:
            x, y = _vector(a, items, category), _vector(b, items, category)
            if any(x) or any(y):
                assert pair["per_category"][category] == pytest.approx(f1_score(x, y)), (a, b, category)
            else:  # neither highlighted this category: nothing to agree on, not a perfect or a zero score
                assert pair["per_category"][category] is None
    # By hand: bob marked "dangerous_persona" where dave never did; carol 0–12 and dave 3–12 on item 2.
    assert pairs[("bob", "dave")]["per_category"]["dangerous_persona"] == pytest.approx(0.0)
    assert pairs[("carol", "dave")]["per_category"]["reframes_helpful"] == pytest.approx(2 * 9 / (12 + 9))


def test_painting_escapes_the_reasoning_and_nests_overlapping_auditors():
    spans = [Span(0, 20, "bob", "dangerous_persona"), Span(10, 70, "carol", "follows_pattern")]
    html = str(paint(REASONING, spans, colours(spans)))
    assert "<script>" not in html and "</script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)</mark>&lt;/script&gt;" in html  # carol's span ends at 70
    assert '<mark class="span span-0" title="bob: dangerous_persona">The exampl</mark>' in html
    # Characters 10–20 are under both: carol's mark nested inside bob's.
    assert ('<mark class="span span-0" title="bob: dangerous_persona"><mark class="span span-1" '
            'title="carol: follows_pattern">') in html
    assert html.endswith("Done &amp; dusted.")


def test_researchers_see_the_painted_spans_on_the_transcript_and_adjudication_pages(labelled_queue, alice_client):
    queue, items = labelled_queue
    item = items[0]
    for url in (reverse("transcript-detail", args=[item.transcript_id]),
                reverse("queue-adjudicate", args=[queue.pk, item.token])):
        body = alice_client.get(url).content.decode()
        assert "<script>alert" not in body
        assert "&lt;script&gt;" in body
        for index, name in enumerate(("bob", "carol", "dave")):
            assert f'class="span span-{index}" title="{name}: ' in body
    spans_page = computed(alice_client, reverse("queue-spans", args=[queue.pk]))
    assert spans_page.status_code == 200 and "bob – carol" in spans_page.content.decode()


def test_the_span_page_follows_a_new_highlight(labelled_queue, alice_client):
    queue, items = labelled_queue
    url = reverse("queue-spans", args=[queue.pk])

    def bob_and_dave():
        return {(p["a"], p["b"]): p for p in computed(alice_client, url).context["pairs"]}[("bob", "dave")]["f1"]

    assert bob_and_dave() == pytest.approx(f1_score(_vector("bob", [0, 2], None), _vector("dave", [0, 2], None)))
    # Dave marks the passage bob marked on item 0, under the same category.
    label = Label.objects.get(item=items[0], auditor__username="dave")
    Highlight.objects.create(label=label, category=queue.taxonomy.categories.get(key="dangerous_persona"),
                             start=0, end=20)
    spans = {**SPANS, "dave": {0: [*SPANS["dave"][0], ("dangerous_persona", 0, 20)], 2: SPANS["dave"][2]}}
    expected = f1_score(_vector("bob", [0, 2], None, spans), _vector("dave", [0, 2], None, spans))
    assert expected > f1_score(_vector("bob", [0, 2], None), _vector("dave", [0, 2], None))
    assert bob_and_dave() == pytest.approx(expected)


def test_auditors_get_no_spans(labelled_queue, client):
    queue, items = labelled_queue
    auditor = Label.objects.get(item=items[0], auditor__username="bob").auditor
    client.force_login(auditor)
    assert client.get(reverse("queue-spans", args=[queue.pk])).status_code == 403
    assert client.get(reverse("transcript-detail", args=[items[0].transcript_id])).status_code == 403
    # The tag itself renders nothing for an auditor, whatever page includes it.
    request = RequestFactory().get("/")
    request.user = auditor
    rendered = Template("{% load spans %}{% painted_reasoning t %}").render(
        Context({"request": request, "t": items[0].transcript})
    )
    assert rendered.strip() == ""
