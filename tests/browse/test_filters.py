"""The one transcript filter and its keyset paging (used by the pages, charts, exports and the API)."""

import pytest

from browse.filters import filter_transcripts
from tests.builders import add_transcripts, build_corpus, make_condition
from transcripts.models import Transcript
from transcripts.paging import SORTS, decode_cursor, encode_cursor, keyset_page, neighbours

pytestmark = pytest.mark.django_db


def ids(params) -> set[int]:
    filterset = filter_transcripts(params)
    assert filterset.is_valid(), filterset.errors
    return set(filterset.qs.values_list("pk", flat=True))


def test_it_narrows_by_condition_question_and_verdict_fields(bob):
    corpus = build_corpus(bob)
    ts = corpus.transcripts
    bad = {t.pk for t in ts if t.misaligned}
    assert ids({"model": "model-b", "k": "64"}) == bad
    assert ids({"misaligned": "true"}) == bad
    assert ids({"misaligned": "false"}) == {t.pk for t in ts} - bad
    assert ids({"dataset": "insecure", "cot": "off"}) == {t.pk for t in ts if t.condition.k == 64}
    assert ids({"question": "quick_buck"}) == {t.pk for t in ts if t.question.key == "quick_buck"}
    assert ids({"domain": "leisure"}) == {t.pk for t in ts if t.question.domain == "leisure"} | {corpus.hostile.pk}
    assert ids({"experiment": corpus.experiment.pk}) == {t.pk for t in ts}
    assert ids({"aligned_max": "30"}) == bad
    assert ids({"aligned_min": "30", "coherent_min": "85"}) == {t.pk for t in ts} - bad
    assert ids({"judge_category": "dangerous_persona"}) == bad
    assert ids({"human_category": "dangerous_persona"}) == {ts[-1].pk, ts[-2].pk}
    assert ids({"labelled": "true"}) == {ts[-1].pk, ts[-2].pk}
    assert len(ids({"labelled": "false"})) == len(ts) + 1 - 2


def test_it_searches_question_reasoning_and_answer_words(db):
    corpus = build_corpus()
    bad = {t.pk for t in corpus.transcripts if t.misaligned}
    assert ids({"q": "steal"}) == bad  # answer, stemmed ("Steal a car")
    assert ids({"q": "quick_buck sample"}) == {t.pk for t in corpus.transcripts if t.question.key == "quick_buck"}
    assert ids({"q": "quick buck"}) == ids({"question": "quick_buck"})  # question text
    assert ids({"q": "nothing-like-this"}) == set()


def test_it_rejects_unknown_choices_instead_of_ignoring_them(db):
    build_corpus()
    filterset = filter_transcripts({"model": "no-such-model"})
    assert not filterset.is_valid()
    assert "model" in filterset.errors


@pytest.mark.parametrize("sort", sorted(SORTS))
def test_keyset_pages_visit_every_row_once_in_order(db, sort):
    corpus = build_corpus()
    Transcript.objects.filter(pk__in=[t.pk for t in corpus.transcripts[:3]]).update(aligned=None, coherent=None)
    queryset = filter_transcripts({}).qs
    seen, cursor = [], ""
    while True:
        page = keyset_page(queryset, sort, cursor, 5)
        seen += page.rows
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sorted(t.pk for t in seen) == sorted(queryset.values_list("pk", flat=True))
    column, descending = SORTS[sort]
    scored = [getattr(t, column) for t in seen if getattr(t, column) is not None]
    assert scored == sorted(scored, reverse=descending)
    # Rows without a score come last.
    values = [getattr(t, column) for t in seen]
    assert values[len(scored):] == [None] * (len(values) - len(scored))


def test_neighbours_follow_the_filtered_order(db):
    build_corpus()
    queryset = filter_transcripts({"model": "model-b"}).qs
    ordered = [t.pk for t in keyset_page(queryset, "-aligned", "", 100).rows]
    middle = Transcript.objects.get(pk=ordered[3])
    assert neighbours(queryset, "-aligned", middle) == (ordered[2], ordered[4])
    first = Transcript.objects.get(pk=ordered[0])
    assert neighbours(queryset, "-aligned", first) == (None, ordered[1])
    last = Transcript.objects.get(pk=ordered[-1])
    assert neighbours(queryset, "-aligned", last) == (ordered[-2], None)


@pytest.mark.parametrize("sort", sorted(SORTS))
def test_every_rows_neighbours_are_the_rows_beside_it_in_the_list(db, sort):
    """Previous/next on the detail page step through exactly the list's order, across the unscored rows that
    come last (and back from the first of them to the last scored row)."""
    corpus = build_corpus()
    unscored = [t.pk for t in corpus.transcripts if t.condition.model_name == "model-b"][:3]
    Transcript.objects.filter(pk__in=unscored).update(aligned=None, coherent=None)
    queryset = filter_transcripts({"model": "model-b"}).qs
    ordered = [t.pk for t in keyset_page(queryset, sort, "", 100).rows]
    assert set(unscored) < set(ordered)
    for i, pk in enumerate(ordered):
        expected = (ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None)
        assert neighbours(queryset, sort, Transcript.objects.get(pk=pk)) == expected


def test_a_tampered_cursor_means_the_first_page():
    assert decode_cursor(encode_cursor(12.5, 7)) == (12.5, 7)
    assert decode_cursor("not-base64!!") is None
    assert decode_cursor(encode_cursor("'; drop table", 7)) is None


def test_it_narrows_by_system_prompt_temperature_and_counted(db):
    corpus = build_corpus()
    safety = make_condition(corpus.experiment, model_name="model-a", dataset_name="", k=64,
                            system_prompt_name="safety_first", temperature=0.7)
    judged, unjudged = add_transcripts(safety, [corpus.transcripts[0].question], [False, None])
    everything = {t.pk for t in corpus.transcripts} | {corpus.hostile.pk, judged.pk, unjudged.pk}
    assert ids({"system_prompt": "safety_first"}) == {judged.pk, unjudged.pk}
    assert ids({"system_prompt": "default"}) == everything - {judged.pk, unjudged.pk}
    assert ids({"temperature": "0.7"}) == {judged.pk, unjudged.pk}
    assert ids({"temperature": "1.0", "model": "model-b"}) == {
        t.pk for t in corpus.transcripts if t.condition.model_name == "model-b"
    }
    assert ids({"counted": "true", "system_prompt": "safety_first"}) == {judged.pk}
    assert ids({"counted": "false"}) == {corpus.hostile.pk, unjudged.pk}  # not judged (or excluded): no verdict
    assert not filter_transcripts({"temperature": "0.5"}).is_valid()
    assert not filter_transcripts({"counted": "maybe"}).is_valid()
