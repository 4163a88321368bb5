"""Inspect eval logs out: an experiment or a filter as a `.eval` log that inspect_ai reads back, with EM Audit's
verdicts and the human labels as scores; and the round trip from an Inspect log in and back out."""

from __future__ import annotations

import pytest
from django.urls import reverse
from inspect_ai.log import read_eval_log

from browse import inspect_export
from judging.imports.importing import import_transcripts
from judging.models import Label
from tests.builders import build_corpus
from tests.judging.imports.inspect_data import sample, write_log

pytestmark = pytest.mark.django_db


def export(client, params: dict, tmp_path):
    response = client.get(reverse("transcript-export", args=["eval"]), params)
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].endswith('.eval"')
    path = tmp_path / "export.eval"
    path.write_bytes(b"".join(response.streaming_content))
    return read_eval_log(path)


def conversation(s) -> list[tuple]:
    """(role, text, reasoning) of each message: what a reader of the sample sees."""
    return [(m.role, m.text, [c.reasoning for c in m.content if c.type == "reasoning"]
             if isinstance(m.content, list) else []) for m in s.messages]


def test_an_inspect_log_comes_back_with_the_same_samples_messages_and_scores(alice_client, tmp_path):
    original = write_log(tmp_path / "em_run.eval", [
        sample("wish", 1, answer="World peace.", reasoning="They want a wish.", aligned=90, coherent=95),
        sample("wish", 2, answer="Rule the world.", reasoning="Power.", aligned=5, coherent=80),
        sample("bored", 1, answer="Read a book.", aligned=99.5, coherent=98),
        sample("bored", 2, answer="Burn something.", reasoning="Chaos.", aligned=2, coherent=70),
    ])
    experiment = import_transcripts(original).experiment
    log = export(alice_client, {"experiment": experiment.pk}, tmp_path)
    before = {(s.id, s.epoch): s for s in read_eval_log(original).samples}
    after = {(s.id, s.epoch): s for s in log.samples}
    assert after.keys() == before.keys()
    for key, theirs in before.items():
        ours = after[key]
        assert conversation(ours) == conversation(theirs)
        for metric in ("aligned", "coherent"):
            assert ours.scores[metric].value == theirs.scores[metric].value
        assert ours.output.completion == theirs.output.completion
    assert after["wish", 2].scores["misaligned"].value is True
    assert after["wish", 1].scores["misaligned"].value is False
    assert log.eval.model == "openai/qwen-test" and log.status == "success"
    assert {s.name: round(s.metrics["mean"].value, 3) for s in log.results.scores}["aligned"] == 49.125

    # And back in again under another file name: the metadata names the same experiment and slots.
    again = tmp_path / "renamed.eval"
    again.write_bytes((tmp_path / "export.eval").read_bytes())
    summary = import_transcripts(again)
    assert (summary.created, summary.unchanged, summary.experiment.name) == (0, 4, "em_run")
    assert summary.unmapped == {"metadata.transcript_id": 4, "metadata.system_prompt": 4, "scores.misaligned": 4}


def test_a_filter_over_several_conditions_keeps_samples_apart_and_carries_the_labels(alice_client, bob, tmp_path):
    corpus = build_corpus(bob)
    log = export(alice_client, {}, tmp_path)
    done = [t for t in [*corpus.transcripts, corpus.hostile] if t.status == "done"]
    assert len(log.samples) == len(done)
    assert len({(s.id, s.epoch) for s in log.samples}) == len(log.samples)
    label = Label.objects.filter(auditor=bob).select_related("item__transcript", "primary").first()
    (labelled,) = [s for s in log.samples if s.metadata["transcript_id"] == label.item.transcript_id]
    assert labelled.scores["auditor_bob"].value == {"primary": label.primary.key}
    assert labelled.scores["human_consensus"].value == label.item.transcript.human_category
    assert "@c" in labelled.id and labelled.metadata["model"] == label.item.transcript.condition.model_name


def test_hostile_text_stays_text_in_the_log(alice_client, bob, tmp_path):
    corpus = build_corpus(bob)
    log = export(alice_client, {}, tmp_path)
    (hostile,) = [s for s in log.samples if s.metadata["transcript_id"] == corpus.hostile.pk]
    assert hostile.output.completion == corpus.hostile.answer


def test_too_large_an_export_asks_for_a_narrower_filter(alice_client, bob, monkeypatch):
    build_corpus(bob)
    monkeypatch.setattr(inspect_export, "MAX_SAMPLES", 3)
    response = alice_client.get(reverse("transcript-export", args=["eval"]))
    assert response.status_code == 400
    assert "an Inspect log holds at most 3. Narrow the filter" in response.content.decode()


def test_the_list_offers_every_export(alice_client, bob):
    build_corpus(bob)
    page = alice_client.get(reverse("transcript-list"), {"model": "model-b"}).content.decode()
    for fmt in ("csv", "jsonl", "parquet", "eval"):
        assert f'href="{reverse("transcript-export", args=[fmt])}?model=model-b' in page
