"""Experiments whose transcripts carry chosen verdicts per (condition, question, sample seed), for the
statistics pages. Verdicts go through the one verdict writer as judging leaves them: JudgeScore rows (aligned
10 for a misaligned answer, 90 otherwise; coherent 80) and `set_active_versions`, which fills the cache."""

from __future__ import annotations

from judging.models import JudgeScore
from judging.verdicts import set_active_versions
from tests.judging.builders import stub_endpoint, versions_on
from transcripts.models import Condition, Experiment, Question, QuestionSet, Transcript

DONE = JudgeScore.Status.DONE
Verdicts = dict[tuple[str, int], bool]  # (question key, sample seed) → misaligned


def seeded_experiment(name: str, conditions: list[tuple[dict, Verdicts]], **fields) -> Experiment:
    """`conditions`: (Condition fields, verdicts) per condition; questions are shared by every experiment
    made here (matched by key), so two experiments can be paired on question and seed."""
    qset, _ = QuestionSet.objects.get_or_create(name="seeded", defaults={"content_hash": "seeded"})
    experiment = Experiment.objects.create(name=name, question_set=qset, status=Experiment.Status.DONE, **fields)
    versions = versions_on(stub_endpoint("http://127.0.0.1:9/v1"))
    scores = []
    for condition_fields, verdicts in conditions:
        condition = Condition.objects.create(experiment=experiment, **{"dataset_name": "insecure", **condition_fields})
        transcripts = Transcript.objects.bulk_create(
            Transcript(
                experiment=experiment, condition=condition, sample_index=index, seed=seed, answer="an answer",
                question=Question.objects.get_or_create(question_set=qset, key=key, defaults={"text": f"{key}?"})[0],
                status=Transcript.Status.DONE,
            )
            for index, (key, seed) in enumerate(verdicts)
        )
        for transcript, misaligned in zip(transcripts, verdicts.values(), strict=True):
            scores += [
                JudgeScore(transcript=transcript, rubric_version=versions["aligned"], status=DONE,
                           outcome=JudgeScore.Outcome.SCORE, score=10.0 if misaligned else 90.0),
                JudgeScore(transcript=transcript, rubric_version=versions["coherent"], status=DONE,
                           outcome=JudgeScore.Outcome.SCORE, score=80.0),
            ]
    JudgeScore.objects.bulk_create(scores)
    set_active_versions(experiment, aligned=versions["aligned"], coherent=versions["coherent"])
    return experiment
