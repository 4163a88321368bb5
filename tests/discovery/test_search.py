"""The search matrix kept in a process catches up with vectors that arrive after it was read: a new text's vector,
and a vector that was pending when the matrix was read, each found once; nothing is read again when nothing
arrived."""

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from discovery import embedding, search
from discovery.models import TextVector, TranscriptText
from tests.builders import embedding_endpoint, make_questions, make_transcript

pytestmark = pytest.mark.django_db


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def embedded(condition, question, i: int, *, done: bool = True):
    """A transcript whose reasoning has vector `unit(i)` (pending, without a vector, when not `done`)."""
    transcript = make_transcript(condition, question, i, reasoning=f"reasoning {i}")
    endpoint = embedding.current_endpoint()
    vector = TextVector.objects.create(endpoint=endpoint, text_hash=embedding.text_hash(f"reasoning {i}"),
                                       status="done" if done else "pending",
                                       vector=unit(i).tobytes() if done else None, dimensions=384 if done else None)
    TranscriptText.objects.create(transcript=transcript, kind="reasoning", endpoint=endpoint, vector=vector)
    return transcript, vector


def test_the_kept_matrix_catches_up_once_per_arrival():
    from tests.builders import experiment_with, make_condition

    endpoint = embedding_endpoint("http://127.0.0.1:9/v1")
    experiment = experiment_with(conditions=[{"model_name": "m", "k": 0, "answers": []}], name="search")
    condition = make_condition(experiment, k=4)
    question = make_questions(["q"], name="search-questions")[0]
    first = [embedded(condition, question, i)[0] for i in range(5)]

    assert search.nearest(unit(2), endpoint, 1) == [(first[2].pk, pytest.approx(1.0, abs=1e-5))]
    late, _ = embedded(condition, question, 10)
    waiting, vector = embedded(condition, question, 11, done=False)
    assert search.nearest(unit(10), endpoint, 1)[0][0] == late.pk  # a new text's vector is found
    assert waiting.pk not in dict(search.nearest(unit(11), endpoint, 10))

    TextVector.objects.filter(pk=vector.pk).update(status="done", vector=unit(11).tobytes(), dimensions=384)
    assert search.nearest(unit(11), endpoint, 1)[0][0] == waiting.pk  # pending when read, done now
    found = search.matrix(endpoint)
    assert sorted(found.ids.tolist()) == sorted([t.pk for t in first] + [late.pk, waiting.pk])  # each once

    with CaptureQueriesContext(connection) as queries:
        assert search.matrix(endpoint) is found  # nothing arrived: nothing read again
    assert len(queries) <= 1
