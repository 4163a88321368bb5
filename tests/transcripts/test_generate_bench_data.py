"""The benchmark data generator leaves a database the pages can be measured on: transcripts, scores, verdict
counts that agree with the transcripts, active judge versions, a labelled and an open annotation queue."""

import pytest
from django.core.management import call_command
from django.db.models import Count, Q

from judging.models import AnnotationQueue, ExperimentJudging, JudgeScore, Label
from transcripts.models import Experiment, Transcript, VerdictCount


@pytest.mark.django_db(transaction=True)  # the command ends with VACUUM, which cannot run in a transaction
def test_it_generates_a_consistent_bench_database():
    call_command("generate_bench_data", rows=4800, labelled=0.05)
    assert Transcript.objects.count() == 4800 and JudgeScore.objects.count() == 9600
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
