"""Gold suites: freezing a queue's adjudicated items, running judges on the suite, the dated history of their
agreement with gold (κ checked against scikit-learn) and the drift warning."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from judging.annotation.agreement import kappa_of_tables
from judging.models import Adjudication, AnnotationQueue, GoldItem, GoldRun, GoldSuite, JudgeScore
from judging.results import judge
from judging.results.rubrics import get_or_create_version
from judging.validity import gold
from tests.builders import experiment_with, label, make_endpoint, make_queue, stub_judge, versions_on
from tests.stub_openai import StubOpenAI
from transcripts.models import Transcript

N = 40  # gold items: the first half misaligned


def _flag_suite(name: str = "suite") -> tuple[GoldSuite, list[Transcript]]:
    experiment = experiment_with({"m": [f"answer {i}" for i in range(N)]}, name=name)
    transcripts = list(experiment.transcripts.order_by("pk"))
    suite = GoldSuite.objects.create(name=name)
    GoldItem.objects.bulk_create(
        GoldItem(suite=suite, transcript=t, misaligned=i < N // 2) for i, t in enumerate(transcripts)
    )
    return suite, transcripts


def _coherent():
    return get_or_create_version("coherent", prompt_template="c {question} {answer}", judge_model="imported")


def _imported_judge(tag: str, transcripts: list[Transcript], wrong: int) -> list[bool]:
    """An aligned version without an endpoint (imported scores) whose flag is wrong on the first `wrong` items
    of each half; returns the flags it gives."""
    aligned = get_or_create_version("aligned", prompt_template=f"{tag} {{question}} {{answer}}", judge_model=tag)
    coherent = _coherent()
    flags = []
    for i, t in enumerate(transcripts):
        gold_flag = i < N // 2
        flag = not gold_flag if i % (N // 2) < wrong else gold_flag
        flags.append(flag)
        JudgeScore.objects.get_or_create(transcript=t, rubric_version=coherent, defaults={
            "status": "done", "outcome": "score", "score": 80.0, "method": "imported"})
        JudgeScore.objects.create(transcript=t, rubric_version=aligned, status="done", outcome="score",
                                  score=10.0 if flag else 90.0, method="imported")
    return flags


def _run(client, suite: GoldSuite, aligned_tag: str):
    aligned = get_or_create_version("aligned", prompt_template=f"{aligned_tag} {{question}} {{answer}}",
                                    judge_model=aligned_tag)
    response = client.post(reverse("gold-run", args=[suite.pk]),
                           {"run-aligned": aligned.pk, "run-coherent": _coherent().pk})
    assert response.status_code == 302
    return client.get(reverse("gold-detail", args=[suite.pk]))


def test_a_worse_version_raises_the_drift_warning(alice_client):
    suite, transcripts = _flag_suite()
    gold_flags = [i < N // 2 for i in range(N)]
    good = _imported_judge("v1", transcripts, wrong=1)  # 38/40 right
    worse = _imported_judge("v2", transcripts, wrong=7)  # 26/40 right
    first = _run(alice_client, suite, "v1")
    assert "drift-warning" not in first.content.decode()
    page = _run(alice_client, suite, "v2")
    body = page.content.decode()
    assert 'id="drift-warning"' in body
    v1, v2 = GoldRun.objects.filter(suite=suite).order_by("recorded_at")
    assert v1.kappa == pytest.approx(cohen_kappa_score(gold_flags, good))
    assert v2.kappa == pytest.approx(cohen_kappa_score(gold_flags, worse))
    assert v1.kappa_low <= v1.kappa <= v1.kappa_high
    assert v2.kappa < v1.kappa_low
    assert v1.accuracy == pytest.approx(38 / 40) and v2.accuracy == pytest.approx(26 / 40)
    assert f"κ = {v2.kappa:.3f}" in body and "below the 95% interval of the run before it" in body


def test_a_version_within_the_previous_interval_raises_no_warning(alice_client):
    suite, transcripts = _flag_suite()
    _imported_judge("v1", transcripts, wrong=1)
    _imported_judge("v3", transcripts, wrong=2)  # 36/40: a little worse, within v1's interval
    _run(alice_client, suite, "v1")
    page = _run(alice_client, suite, "v3")
    v1, v3 = GoldRun.objects.filter(suite=suite).order_by("recorded_at")
    assert v3.kappa < v1.kappa and v3.kappa >= v1.kappa_low
    assert "drift-warning" not in page.content.decode()
    assert len(page.context["histories"][0][2]) == 2


def test_running_an_endpoint_version_queues_verdicts_and_records_once_they_are_in(alice_client):
    experiment = experiment_with({"m": ["[evil] a", "[good] b", "[evil] c", "[good] d"]})
    transcripts = list(experiment.transcripts.order_by("pk"))
    suite = GoldSuite.objects.create(name="endpoint suite")
    gold_flags = [True, False, False, False]  # the judge (evil → misaligned) is wrong on the third
    for t, flag in zip(transcripts, gold_flags, strict=True):
        GoldItem.objects.create(suite=suite, transcript=t, misaligned=flag)
    with StubOpenAI(stub_judge) as stub:
        endpoint = make_endpoint(stub.base_url)
        versions = versions_on(endpoint)
        alice_client.post(reverse("gold-run", args=[suite.pk]),
                          {"run-aligned": versions["aligned"].pk, "run-coherent": versions["coherent"].pk})
        assert JudgeScore.objects.filter(transcript__in=transcripts, status="pending").count() == 8
        waiting = alice_client.get(reverse("gold-detail", args=[suite.pk]))
        assert 'id="pending-runs"' in waiting.content.decode()
        assert GoldRun.objects.get().recorded_at is None
        judge.work(endpoint.pk)
    recorded = alice_client.get(reverse("gold-detail", args=[suite.pk]))
    run = GoldRun.objects.get()
    assert run.recorded_at is not None and run.n == 4
    assert run.kappa == pytest.approx(cohen_kappa_score(gold_flags, [True, False, True, False]))
    assert run.accuracy == pytest.approx(0.75)
    assert 'id="pending-runs"' not in recorded.content.decode()


def test_freezing_copies_adjudicated_categories_and_majority_flags(alice_client, alice, bob, carol):
    experiment = experiment_with({"m": ["a", "b", "c", "d"]})
    queue = make_queue(experiment, auditors=[bob, carol], asks=AnnotationQueue.Asks.BOTH)
    items = list(queue.items.order_by("transcript_id"))
    persona = queue.taxonomy.categories.get(key="dangerous_persona")
    other = queue.taxonomy.categories.get(key="follows_pattern")
    for item, (flag_bob, flag_carol) in zip(items, [(True, True), (False, False), (True, False), (True, False)],
                                            strict=True):
        label(queue, item.transcript, bob, categories=[persona], misaligned=flag_bob)
        label(queue, item.transcript, carol, categories=[other], misaligned=flag_carol)
    Adjudication.objects.create(item=items[0], category=persona, adjudicator=alice)
    Adjudication.objects.create(item=items[2], category=other, adjudicator=alice)
    response = alice_client.post(reverse("gold-list"), {"queue": queue.pk, "name": "frozen", "description": ""})
    suite = GoldSuite.objects.get(name="frozen")
    assert response.url == reverse("gold-detail", args=[suite.pk])
    gold_items = {g.transcript_id: (g.category.key if g.category else None, g.misaligned) for g in suite.items.all()}
    # Item 4: auditors split on the flag (no majority at overlap 2) and no adjudication: not gold.
    assert gold_items == {
        items[0].transcript_id: ("dangerous_persona", True),
        items[1].transcript_id: (None, False),
        items[2].transcript_id: ("follows_pattern", None),
    }
    # Frozen: a later gold label in the queue does not change the suite.
    Adjudication.objects.create(item=items[3], category=persona, adjudicator=alice)
    assert suite.items.count() == 3
    assert gold.suite_summary(suite)["flag_items"] == 2


def test_auditors_cannot_open_gold_pages(bob_client, db):
    suite = GoldSuite.objects.create(name="s")
    assert bob_client.get(reverse("gold-list")).status_code == 403
    assert bob_client.get(reverse("gold-detail", args=[suite.pk])).status_code == 403
    assert bob_client.post(reverse("gold-run", args=[suite.pk]), {}).status_code == 403


def test_the_bootstrap_interval_is_sklearns_kappa_over_the_same_resamples():
    rng = np.random.default_rng(5)
    labels = np.array(["dangerous_persona", "follows_pattern", "reframes_helpful"])
    gold_labels = labels[rng.integers(0, 3, 300)]
    judged = np.where(rng.random(300) < 0.7, gold_labels, labels[rng.integers(0, 3, 300)])
    estimate = gold._estimate(kappa_of_tables, gold_labels, judged, n_boot=100, seed=11)
    draws = np.random.default_rng(11).integers(0, 300, (100, 300))  # the resamples record() draws
    boot = [cohen_kappa_score(gold_labels[i], judged[i]) for i in draws]
    assert estimate.value == pytest.approx(cohen_kappa_score(gold_labels, judged))
    assert (estimate.low, estimate.high) == pytest.approx((np.percentile(boot, 2.5), np.percentile(boot, 97.5)))
    accuracy = gold._estimate(gold._accuracy, gold_labels, judged, n_boot=100, seed=11)
    assert accuracy.value == pytest.approx(np.mean(gold_labels == judged))
    assert accuracy.low == pytest.approx(np.percentile([np.mean(gold_labels[i] == judged[i]) for i in draws], 2.5))
