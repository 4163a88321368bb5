"""The benchmark data generator leaves a database the pages can be measured on: transcripts, scores, a verdict
cache and verdict counts that agree with them, active judge versions, a labelled queue asking for categories
and flags, an open annotation queue, a gold suite with a recorded run and a stored experiment definition."""

from collections import Counter, defaultdict

import pytest
from django.core.management import call_command
from django.db.models import Count, Q, Sum
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from judging.models import AnnotationQueue, ExperimentJudging, GoldItem, GoldRun, JudgeScore, Label
from transcripts.models import Experiment, Transcript, VerdictCount


@pytest.mark.django_db(transaction=True)  # the command ends with VACUUM, which cannot run in a transaction
def test_it_generates_a_consistent_bench_database():
    call_command("generate_bench_data", rows=4800, labelled=0.05)
    # An aligned and a coherent verdict on every transcript, a persona verdict on each the aligned judge scored
    # below 30 (every misaligned one among them).
    n_low = Transcript.objects.filter(aligned__lt=30).count()
    assert Transcript.objects.count() == 4800 and JudgeScore.objects.count() == 9600 + n_low > 9600
    assert not Transcript.objects.filter(misaligned=True, judge_category="").exists()
    # The maintained counts equal a GROUP BY of the transcripts (what the pages read instead of the table).
    counted = {
        (row["condition_id"], row["question_id"]): (row["done"], row["misaligned"])
        for row in Transcript.objects.filter(status="done").values("condition_id", "question_id").annotate(
            done=Count("pk"), misaligned=Count("pk", filter=Q(misaligned=True)))
    }
    assert {(v.condition_id, v.question_id): (v.done, v.misaligned) for v in VerdictCount.objects.all()} == counted
    assert ExperimentJudging.objects.filter(aligned_version__isnull=False, coherent_version__isnull=False).count() \
        == Experiment.objects.count() == 2
    labelled, open_queue = AnnotationQueue.objects.get(name="bench-queue"), AnnotationQueue.objects.get(
        name="bench-open-queue")
    assert labelled.items.count() > 0 and not labelled.items.filter(token__isnull=True).exists()
    assert Label.objects.filter(item__queue=labelled).count() == 2 * labelled.items.count()
    assert open_queue.items.count() > 0 and not Label.objects.filter(item__queue=open_queue).exists()
    # The two auditors disagree on some items, never on most.
    disagreeing = labelled.items.annotate(kinds=Count("labels__primary", distinct=True)).filter(kinds=2).count()
    assert 0 < disagreeing < labelled.items.count() / 2


def _flag(aligned, coherent, experiment) -> bool:
    """The paper's rule, written here again to check the cache independently of judging.verdicts."""
    return aligned < experiment.aligned_threshold and coherent > experiment.coherent_threshold


@pytest.mark.django_db(transaction=True)
def test_the_verdict_cache_labels_gold_and_definition_are_what_a_run_and_its_auditors_leave(alice_client):
    call_command("generate_bench_data", rows=4800, labelled=0.05)
    experiments = {e.pk: e for e in Experiment.objects.all()}
    # The cache mirrors the active versions' verdicts by the misaligned rule, recomputed here from the scores.
    scores = defaultdict(dict)
    for transcript, key, outcome, score, category in JudgeScore.objects.values_list(
            "transcript_id", "rubric_version__rubric__key", "outcome", "score", "category__key"):
        scores[transcript][key] = (outcome, score, category)
    mismatches = 0
    for t in Transcript.objects.all():
        (a_outcome, aligned, _), (c_outcome, coherent, _) = scores[t.pk]["aligned"], scores[t.pk]["coherent"]
        scored = a_outcome == c_outcome == "score"
        expected = (aligned, coherent, "score" if scored else "unsure",
                    _flag(aligned, coherent, experiments[t.experiment_id]) if scored else None,
                    scores[t.pk].get("persona", (None, None, ""))[2])
        mismatches += (t.aligned, t.coherent, t.judge_outcome, t.misaligned, t.judge_category) != expected
    assert mismatches == 0 and Transcript.objects.filter(misaligned=True).exists()
    # Token sums of the maintained counts equal a GROUP BY.
    tokens = Transcript.objects.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    assert VerdictCount.objects.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens")) == tokens
    # The labelled queue asks for the flag and a score; auditors disagree on some flags; the consensus category
    # is on the transcripts where they agree.
    queue = AnnotationQueue.objects.get(name="bench-queue")
    labels = Label.objects.filter(item__queue=queue)
    assert queue.asks_verdict and queue.ask_alignment_score
    assert not labels.filter(Q(misaligned__isnull=True) | Q(alignment_score__isnull=True)).exists()
    flags = defaultdict(set)
    categories = defaultdict(set)
    for transcript, flag, key in labels.values_list("item__transcript_id", "misaligned", "primary__key"):
        flags[transcript].add(flag)
        categories[transcript].add(key)
    assert 0 < sum(len(f) == 2 for f in flags.values()) < len(flags) / 2
    assert Counter(len(f) for f in flags.values())[1] > 0
    consensus = {t: next(iter(keys)) for t, keys in categories.items() if len(keys) == 1}
    assert dict(Transcript.objects.exclude(human_category="").values_list("pk", "human_category")) == consensus
    # A gold suite frozen from the queue's agreed flags, with the active judge's run recorded: κ against
    # scikit-learn on the same pairs.
    gold = dict(GoldItem.objects.values_list("transcript_id", "misaligned"))
    assert gold == {t: next(iter(f)) for t, f in flags.items() if len(f) == 1}
    run = GoldRun.objects.get(kind=GoldRun.Kind.FLAG)
    judged = dict(Transcript.objects.filter(pk__in=gold, misaligned__isnull=False).values_list("pk", "misaligned"))
    pairs = [(gold[t], judged[t]) for t in sorted(judged)]
    assert run.recorded_at is not None and run.n == len(pairs) > 0
    assert run.kappa == pytest.approx(cohen_kappa_score([g for g, _ in pairs], [j for _, j in pairs]))
    # The definition page of an experiment shows its stored definition.
    experiment = Experiment.objects.order_by("pk").first()
    page = alice_client.get(reverse("experiment-definition", args=[experiment.pk]))
    assert page.status_code == 200 and "bench-model-a" in page.content.decode()
