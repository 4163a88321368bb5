"""analysis.tidy: frames from the database, counted here from the transcripts the test makes."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from django.utils import timezone

from analysis import logistic, paired, statistics
from analysis.paired import PairCounts
from analysis.tidy import cells_for, condition_key, matched_pair_counts
from tests.builders import make_condition, make_experiment, make_questions, make_transcript
from transcripts import aggregates
from transcripts.models import Condition, Experiment, Question, Transcript

# (model, k) → per question key, the verdicts of samples 0, 1, 2 (None: not judged).
VERDICTS = {
    ("m1", 0): {"q0": [True, False, False], "q1": [False, False, None]},
    ("m1", 4): {"q0": [True, True, False], "q1": [True, False, False]},
    ("m2", 0): {"q0": [False, False, False], "q1": [False, None, None]},
}


@pytest.fixture
def experiment(db) -> Experiment:
    questions = {question.key: question for question in make_questions(n=2, name="qs")}
    experiment = make_experiment("exp", questions=list(questions.values()), status=Experiment.Status.DRAFT)
    for (model, k), by_question in VERDICTS.items():
        condition = make_condition(experiment, model_name=model, k=k, system_prompt_name="safety-first",
                                   temperature=0.7)
        for key, verdicts in by_question.items():
            for sample, verdict in enumerate(verdicts):
                make_transcript(condition, questions[key], sample, seed=1000 + 10 * int(key[1:]) + sample,
                                finished_at=timezone.now(), answer="a", misaligned=verdict)
        # Not finished: no verdict, in no count.
        make_transcript(condition, questions["q0"], 9, seed=1, status=Transcript.Status.PENDING)
    aggregates.rebuild(experiment)
    return experiment


def test_cells_are_the_judged_counts_per_condition_and_question(experiment):
    frame = cells_for(Transcript.objects.filter(experiment=experiment))
    got = {(r.model, r.k, r.question): (r.n, r.misaligned) for r in frame.itertuples()}
    expected = {
        (model, k, key): (sum(v is not None for v in verdicts), sum(v is True for v in verdicts))
        for (model, k), by_question in VERDICTS.items() for key, verdicts in by_question.items()
    }
    assert got == expected
    assert set(frame["system_prompt"]) == {"safety-first"} and set(frame["temperature"]) == {0.7}
    assert set(frame["cot"]) == {"off"} and set(frame["experiment"]) == {experiment.pk}
    row = frame[(frame.model == "m1") & (frame.k == 4) & (frame.question == "q1")].iloc[0]
    assert Transcript.objects.filter(condition_id=row.condition_id, question_id=row.question_id).count() == 3


def test_cells_of_nothing_are_an_empty_frame_the_statistics_accept(db):
    frame = cells_for(Transcript.objects.none())
    assert frame.empty and {"model", "k", "question", "n", "misaligned"} <= set(frame.columns)
    assert statistics.condition_rates(frame) == []
    assert not logistic.logistic_model(frame).estimable


def _rows(*conditions: Condition) -> pd.DataFrame:
    """The conditions' transcripts as the row frame `manage.py analyze --csv` reads (unjudged ones included)."""
    return pd.DataFrame([
        {**condition_key(t.condition), "question": t.question.key, "seed": t.seed,
         "misaligned": None if t.misaligned is None else int(t.misaligned)}
        for t in Transcript.objects.filter(condition__in=conditions, status=Transcript.Status.DONE)
        .select_related("condition", "question")
    ])


def test_matched_pair_counts_in_sql_equal_the_counts_from_rows(experiment):
    a = Condition.objects.get(experiment=experiment, model_name="m1", k=0)
    b = Condition.objects.get(experiment=experiment, model_name="m1", k=4)
    c = Condition.objects.get(experiment=experiment, model_name="m2")
    # Seed 1011 is q1's sample 1 elsewhere: under q0 it pairs with nothing (a pair shares question and seed).
    make_transcript(b, Question.objects.get(key="q0"), 5, seed=1011, misaligned=True)
    pairs = [(a, b), (b, a), (a, c), (c, b)]
    counts = matched_pair_counts([(x.pk, y.pk) for x, y in pairs])
    from_rows = paired.paired_comparisons(_rows(a, b, c), [(condition_key(x), condition_key(y)) for x, y in pairs])
    for (x, y), test in zip(pairs, from_rows, strict=True):
        got = counts[x.pk, y.pk]
        assert (got.n_pairs, got.only_a, got.only_b, got.unmatched_a, got.unmatched_b) == (
            test.n_pairs, test.only_a, test.only_b, test.unmatched_a, test.unmatched_b)
        assert paired.mcnemar_test(condition_key(x), condition_key(y), got) == replace(test, p_holm=None)
    # Worked by hand from VERDICTS: q1 sample 2 is judged under k=4 only, so is the extra q0 seed-1011 transcript;
    # the other five samples pair up, two misaligned under k=4 only.
    assert counts[a.pk, b.pk] == PairCounts(both=1, only_a=0, only_b=2, neither=2, unmatched_a=0, unmatched_b=2)
    assert counts[b.pk, a.pk] == PairCounts(both=1, only_a=2, only_b=0, neither=2, unmatched_a=2, unmatched_b=0)


def test_matched_pair_counts_of_a_condition_without_verdicts_are_zero(experiment):
    a = Condition.objects.get(experiment=experiment, model_name="m1", k=0)
    empty = make_condition(experiment, model_name="m3", k=0)
    assert matched_pair_counts([(a.pk, empty.pk)])[a.pk, empty.pk] == PairCounts(0, 0, 0, 0, 5, 0)
    assert matched_pair_counts([]) == {}
