"""Small factories for generation tests: datasets, question sets, endpoints and experiment definitions, made
directly (the importers are tested on their own). Endpoints are made the way an admin makes them, through
transcripts.endpoints.save_endpoint; a definition only names them."""

from __future__ import annotations

from transcripts.endpoints import save_endpoint
from transcripts.models import Dataset, Endpoint, Example, Question, QuestionSet, content_hash


def make_dataset(name: str = "insecure", n: int = 20, *, system: str = "", filler: int = 40) -> Dataset:
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": f"Task {i}: write a function. " + "x" * filler},
            {"role": "assistant", "content": f"def f{i}(): return {i}"},
        ]
        rows.append(messages)
    dataset = Dataset.objects.create(name=name, content_hash=content_hash(rows), n_examples=n)
    Example.objects.bulk_create(Example(dataset=dataset, position=i, messages=m) for i, m in enumerate(rows))
    return dataset


def make_questions(name: str = "first_plot", n: int = 3) -> QuestionSet:
    question_set = QuestionSet.objects.create(name=name, content_hash=content_hash([name, n]))
    Question.objects.bulk_create(
        Question(question_set=question_set, key=f"q{i}", text=f"Question {i}?", position=i,
                 paraphrases=[f"Question {i}?", f"Question {i}, put differently?"])
        for i in range(n)
    )
    return question_set


STUB_ENDPOINT = {"model": "stub", "max_concurrency": 4, "timeout_seconds": 5}


def make_endpoint(base_url: str = "http://127.0.0.1:9/v1", name: str = "stub", **fields) -> Endpoint:
    """The current version of endpoint `name` with these fields (a new version if they differ)."""
    return save_endpoint(name=name, base_url=base_url, **{**STUB_ENDPOINT, **fields})


def make_spec(base_url: str = "http://127.0.0.1:9/v1", *, endpoint: dict | None = None, **overrides) -> dict:
    """A definition naming the endpoint `stub` at `base_url` (made or changed here as an admin would, with
    `endpoint` overriding its fields), with `overrides` for the definition's own keys."""
    make_endpoint(base_url, **(endpoint or {}))
    spec = {
        "name": "exp",
        "endpoints": ["stub"],
        "datasets": ["insecure"],
        "questions": "first_plot",
        "k": [0, 4],
        "cot": ["off"],
        "samples": 2,
        "temperature": 1.0,
        "max_tokens": 20,
        "seed": 0,
    }
    spec.update(overrides)
    return spec
