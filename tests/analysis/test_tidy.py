"""analysis.tidy: frames from the database, counted here from the transcripts the test makes."""

from __future__ import annotations

from collections import Counter

import pytest
from django.utils import timezone

from analysis import statistics
from analysis.tidy import cells_for, condition_key, paired_rows
from transcripts import aggregates
from transcripts.models import Condition, Experiment, Question, QuestionSet, Transcript

# (model, k) → per question key, the verdicts of samples 0, 1, 2 (None: not judged).
VERDICTS = {
    ("m1", 0): {"q0": [True, False, False], "q1": [False, False, None]},
    ("m1", 4): {"q0": [True, True, False], "q1": [True, False, False]},
    ("m2", 0): {"q0": [False, False, False], "q1": [False, None, None]},
}


@pytest.fixture
def experiment(db) -> Experiment:
    question_set = QuestionSet.objects.create(name="qs", content_hash="x")
    questions = {key: Question.objects.create(question_set=question_set, key=key, text=key, position=i)
                 for i, key in enumerate(("q0", "q1"))}
    experiment = Experiment.objects.create(name="exp", question_set=question_set)
    for (model, k), by_question in VERDICTS.items():
        condition = Condition.objects.create(experiment=experiment, model_name=model, dataset_name="insecure", k=k,
                                             system_prompt_name="safety-first", temperature=0.7)
        for key, verdicts in by_question.items():
            for sample, verdict in enumerate(verdicts):
                Transcript.objects.create(
                    experiment=experiment, condition=condition, question=questions[key], sample_index=sample,
                    seed=1000 + 10 * int(key[1:]) + sample, status=Transcript.Status.DONE,
                    finished_at=timezone.now(), answer="a", misaligned=verdict,
                )
        # Not finished: no verdict, in no count.
        Transcript.objects.create(experiment=experiment, condition=condition, question=questions["q0"],
                                  sample_index=9, seed=1)
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
    assert not statistics.logistic_model(frame).estimable


def test_paired_rows_match_two_conditions_on_question_and_seed(experiment):
    a = Condition.objects.get(experiment=experiment, model_name="m1", k=0)
    b = Condition.objects.get(experiment=experiment, model_name="m1", k=4)
    rows = paired_rows(a, b)
    assert Counter(zip(rows["k"], rows["misaligned"], strict=True)) == {(0, 0): 4, (0, 1): 1, (4, 0): 3, (4, 1): 3}
    [test] = statistics.paired_comparisons(rows, [(condition_key(a), condition_key(b))])
    # q1 sample 2 is judged under k=4 only; the other five samples pair up.
    assert (test.n_pairs, test.unmatched_a, test.unmatched_b) == (5, 0, 1)
    assert (test.only_a, test.only_b) == (0, 2)
    # Several pairs' sides in one read: the same rows plus those of the third condition.
    third = Condition.objects.get(experiment=experiment, model_name="m2")
    more = paired_rows(a, b, third)
    assert len(more) == len(rows) + 4 and set(more["model"]) == {"m1", "m2"}
