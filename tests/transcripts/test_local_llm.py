"""End to end against the real local llama.cpp server (SmolLM2) through a real worker and the openai client."""

import pytest

from tests.builders import make_dataset, make_questions, make_spec
from tests.conftest import wait_until
from transcripts.experiments.actions import launch
from transcripts.experiments.planning import define_experiment
from transcripts.generation import slot_messages
from transcripts.prompting import prompt_hash

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]


def test_it_generates_real_answers_with_the_local_model(celery_worker_factory, local_llm_url):
    make_dataset(n=6, filler=10)
    make_questions(n=2)
    spec = make_spec(local_llm_url, k=[0, 2], cot=["off", "tags"], samples=1, max_tokens=24,
                     endpoint={"model": "smollm2", "max_concurrency": 1, "timeout_seconds": 120})
    experiment = define_experiment(spec)
    celery_worker_factory(concurrency=4)
    launch(experiment)
    wait_until(lambda: not experiment.transcripts.exclude(status="done").exists(), timeout=240, interval=1,
               message="8 transcripts from SmolLM2")
    transcripts = list(experiment.transcripts.select_related("condition", "question", "experiment"))
    assert len(transcripts) == 8
    for t in transcripts:
        assert (t.answer or t.reasoning).strip(), f"empty reply for {t.slot_key}"
        assert t.prompt_tokens > 0 and t.completion_tokens > 0
        assert t.finish_reason in ("stop", "length")
        assert t.prompt_hash == prompt_hash(slot_messages(t))  # the page can rebuild the exact prompt
    k2 = [t for t in transcripts if t.condition.k == 2]
    k0 = [t for t in transcripts if t.condition.k == 0]
    assert min(t.prompt_tokens for t in k2) > max(t.prompt_tokens for t in k0)
    # The worker marks the experiment done once its driver has recorded the last row and returned (once per
    # message, transcripts/generation.work): a moment after the rows read as done, so wait for it too.
    wait_until(lambda: experiment.refresh_from_db() or experiment.status == "done", timeout=60,
               message="the experiment marked done")
