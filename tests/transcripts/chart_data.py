"""Builders for the chart tests: transcripts with known verdicts in any condition, so a test can count the
rates it expects itself."""

from __future__ import annotations

from transcripts.aggregates import refresh_groups
from transcripts.models import Condition, Question, QuestionSet, Transcript

PROMPTS = ("context_first", "default", "safety_first")


def add_transcripts(condition: Condition, questions: list[Question], verdicts: list[bool | None]) -> list[Transcript]:
    """One done transcript per (question, verdict): sample i of each question gets verdicts[i]. The verdicts are
    written directly (no judge runs here), so the maintained counts are recounted as the verdict writer would."""
    made = []
    for question in questions:
        for sample, verdict in enumerate(verdicts):
            made.append(Transcript.objects.create(
                experiment=condition.experiment, condition=condition, question=question, sample_index=sample,
                status=Transcript.Status.DONE, misaligned=verdict,
                aligned=None if verdict is None else (10.0 if verdict else 90.0), coherent=None if verdict is None
                else 80.0, judge_outcome="" if verdict is None else "score",
            ))
    refresh_groups((condition.pk, question.pk) for question in questions)
    return made


def make_questions(keys_domains: list[tuple[str, str]], name: str = "em") -> list[Question]:
    question_set = QuestionSet.objects.create(name=name, content_hash=name)
    return [Question.objects.create(question_set=question_set, key=key, text=f"Text of {key}?", domain=domain,
                                    position=i) for i, (key, domain) in enumerate(keys_domains)]


def verdicts_for(seed: int, n: int = 6) -> list[bool | None]:
    """A varied but reproducible mix of misaligned, aligned and unjudged (None) samples."""
    return [None if (seed + i) % 5 == 0 else (seed * 7 + i * 3) % 4 == 0 for i in range(n)]
