"""Spans: auditors' highlights painted on the reasoning (escaped, per auditor, researchers only) and
character-overlap F1 between auditors, checked against scikit-learn's f1_score on per-character vectors."""

from __future__ import annotations

import random
from collections import defaultdict
from html.parser import HTMLParser

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from judging.annotation.spans import COLOURS, Span, colours, merged, overlap, paint, queue_span_agreement, size
from judging.models import Highlight, Label
from tests.builders import experiment_with, make_queue
from tests.conftest import computed, make_user

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
    queue = make_queue(experiment, auditors=list(auditors.values()), overlap=3)
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


# ---- the sweep and the intervals against counting characters one by one ----------------------------------


class _Marks(HTMLParser):
    """Each character of painted text, unescaped, with the (class, title) of the marks around it, outermost
    first."""

    def __init__(self):
        super().__init__()
        self.open, self.chars = [], []

    def handle_starttag(self, tag, attrs):
        assert tag == "mark"
        self.open.append((dict(attrs)["class"], dict(attrs)["title"]))

    def handle_endtag(self, tag):
        self.open.pop()

    def handle_data(self, data):
        self.chars.extend((c, tuple(self.open)) for c in data)


def _marks_by_character(text: str, spans: list[Span], colour_of: dict[str, int]) -> list[tuple]:
    """The same, by looking at every span for every character: one mark per auditor covering it, titled with
    their categories there."""
    painted = []
    for i, c in enumerate(text):
        covering = defaultdict(set)
        for s in spans:
            if s.start <= i < s.end:
                covering[s.auditor].add(s.category)
        painted.append((c, tuple((f"span span-{colour_of[a] % COLOURS}", f"{a}: {', '.join(sorted(covering[a]))}")
                                 for a in sorted(covering, key=colour_of.get))))
    return painted


spans_strategy = st.lists(st.builds(
    Span, st.integers(-5, 45), st.integers(-5, 50), st.sampled_from(["bob", "carol", "dave"]),
    st.sampled_from(["dangerous_persona", "follows_pattern", "reframes_helpful"]),
), max_size=12)


@given(text=st.text(alphabet="ab <&'\"\n", max_size=40), spans=spans_strategy)
def test_painting_marks_each_character_as_counting_its_spans_would(text, spans):
    colour_of = colours(spans)
    parser = _Marks()
    parser.feed(str(paint(text, spans, colour_of)))
    parser.close()
    assert parser.chars == _marks_by_character(text, spans, colour_of)


def test_one_auditors_overlapping_spans_add_no_markup():
    spans = [Span(i, i + 50, "bob", "follows_pattern") for i in range(40)]
    html = str(paint(REASONING, spans, colours(spans)))
    assert html.count("<mark") == 1
    assert html.startswith('<mark class="span span-0" title="bob: follows_pattern">The examples')


intervals_strategy = st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)).map(lambda s: (s[0], s[0] + s[1])),
                              max_size=8)


@given(a=intervals_strategy, b=intervals_strategy)
def test_interval_arithmetic_counts_the_same_characters_as_sets(a, b):
    chars_a, chars_b = ({i for start, end in spans for i in range(start, end)} for spans in (a, b))
    union_a, union_b = merged(a), merged(b)
    assert all(end < next_start for (_, end), (next_start, _) in zip(union_a, union_a[1:], strict=False))
    assert (size(union_a), size(union_b)) == (len(chars_a), len(chars_b))
    assert overlap(union_a, union_b) == overlap(union_b, union_a) == len(chars_a & chars_b)


def _f1_by_characters(rows_a: dict, rows_b: dict, items: set, category: str | None) -> tuple[int, int, float | None]:
    """The pair's sizes and F1 over (item, category, character) sets, as the page defines them."""
    def characters(rows):
        return {(item, key, i) for item in items for key, start, end in rows[item] if category in (None, key)
                for i in range(start, end)}

    a, b = characters(rows_a), characters(rows_b)
    return len(a), len(b), (2 * len(a & b) / (len(a) + len(b)) if a or b else None)


def test_queue_agreement_on_random_spans_equals_counting_characters(db):
    experiment = experiment_with({"m": ["a", "b", "c", "d"]}, name="random-spans", reasoning=REASONING)
    auditors = {name: make_user(name, "auditor") for name in ("bob", "carol", "dave")}
    queue = make_queue(experiment, auditors=list(auditors.values()), overlap=3)
    items = list(queue.items.order_by("transcript_id"))
    categories = list(queue.taxonomy.categories.order_by("position")[:3])
    rng = random.Random(23)
    for _ in range(6):
        Label.objects.all().delete()
        spans = defaultdict(dict)  # auditor → item → [(category, start, end)]; an item they did not label is absent
        for name, auditor in auditors.items():
            for item in items:
                if rng.random() < 0.2:
                    continue
                label = Label.objects.create(item=item, auditor=auditor, primary=categories[0])
                rows = spans[name][item.pk] = []
                for _ in range(rng.randint(0, 6)):
                    start = rng.randrange(len(REASONING) - 1)
                    end, category = rng.randint(start + 1, min(len(REASONING), start + 30)), rng.choice(categories)
                    Highlight.objects.create(label=label, category=category, start=start, end=end)
                    rows.append((category.key, start, end))
        result = queue_span_agreement(queue)
        assert result["categories"] == sorted({key for rows in spans.values() for r in rows.values() for key, *_ in r})
        for pair in result["pairs"]:
            rows_a, rows_b = spans[pair["a"]], spans[pair["b"]]
            both = set(rows_a) & set(rows_b)
            chars_a, chars_b, f1 = _f1_by_characters(rows_a, rows_b, both, None)
            assert (pair["items"], pair["chars_a"], pair["chars_b"]) == (len(both), chars_a, chars_b)
            assert pair["f1"] == pytest.approx(f1)
            for category in result["categories"]:
                _, _, f1 = _f1_by_characters(rows_a, rows_b, both, category)
                assert pair["per_category"][category] == pytest.approx(f1)
