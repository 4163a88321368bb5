"""Builders for the chart tests: transcripts with known verdicts in any condition, so a test can count the
rates it expects itself."""

from __future__ import annotations

from transcripts.aggregates import refresh_groups
from transcripts.models import Condition, Experiment, Question, QuestionSet, Transcript

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


def pooled_corpus() -> list[Transcript]:
    """Two models on one dataset at k ∈ {0, 8}, each run with CoT off and native, under two system prompts and at
    two temperatures: the paper's default view (colour = model, panels = dataset) pools the last three axes."""
    experiment = Experiment.objects.create(name="pooled")
    questions = make_questions([("bored", "leisure"), ("ruler", "power")])
    made = []
    for m, model in enumerate(("model-a", "model-b")):
        for k in (0, 8):
            for c, (cot, prompt, temperature) in enumerate(
                (("off", "default", 1.0), ("native", "safety_first", 0.7))
            ):
                condition = Condition.objects.create(
                    experiment=experiment, model_name=model, dataset_name="insecure" if k else "", k=k, cot_mode=cot,
                    system_prompt_name=prompt, temperature=temperature,
                )
                made += add_transcripts(condition, questions, verdicts_for(m * 7 + k + c, n=5))
    return made
