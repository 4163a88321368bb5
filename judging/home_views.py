"""The first page after login. A researcher sees what is running and what to open next (results,
transcripts, queues, agreement); an auditor goes to their queues (views.annotate_home).

It lives in judging because it shows both apps' state (judging depends on transcripts, never the reverse).
Every count comes from a grouped query, so the page costs the same few queries however many rows it lists.
"""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from transcripts.access import is_researcher
from transcripts.models import Experiment, Transcript

from .assignment import with_counts
from .models import AnnotationQueue, JudgeScore

EXPERIMENTS_SHOWN = 20
QUEUES_SHOWN = 10


def _experiments_with_progress() -> list[Experiment]:
    """The newest experiments, each with .progress: slots done/failed/total and judge scores done/total."""
    experiments = list(Experiment.objects.order_by("-created_at")[:EXPERIMENTS_SHOWN])
    slots = {
        row["experiment_id"]: row
        for row in Transcript.objects.filter(experiment__in=experiments).order_by().values("experiment_id").annotate(
            total=Count("pk"),
            done=Count("pk", filter=Q(status=Transcript.Status.DONE)),
            failed=Count("pk", filter=Q(status=Transcript.Status.FAILED)),
        )
    }
    scores = {
        row["transcript__experiment_id"]: row
        for row in JudgeScore.objects.filter(transcript__experiment__in=experiments).order_by()
        .values("transcript__experiment_id")
        .annotate(scores=Count("pk"), scored=Count("pk", filter=Q(status=JudgeScore.Status.DONE)))
    }
    for experiment in experiments:
        counts = {"total": 0, "done": 0, "failed": 0, "scores": 0, "scored": 0,
                  **slots.get(experiment.pk, {}), **scores.get(experiment.pk, {})}
        counts["percent"] = round(100 * counts["done"] / counts["total"]) if counts["total"] else 0
        experiment.progress = counts
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
