"""The first page after login. A researcher sees what is running and what to open next (results,
transcripts, queues, agreement); an auditor goes to their queues (views.annotate_home).

It lives in browse because it shows both apps' state.
Every count comes from a grouped query, so the page costs the same few queries however many rows it lists;
slot counts read the maintained verdict counts (transcripts.experiments.progress.slot_counts), not every
transcript.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from judging.annotation.assignment import with_counts
from judging.imports.provenance import imported_notes
from judging.models import AnnotationQueue, JudgeScore
from transcripts.access import is_researcher
from transcripts.experiments.progress import slot_counts
from transcripts.models import Experiment, Transcript

EXPERIMENTS_SHOWN = 20
QUEUES_SHOWN = 10


def _experiments_with_progress() -> list[Experiment]:
    """The newest experiments, each with .progress: transcripts done/failed/total, and for running ones the
    judge scores done/total (only those: counting scores joins every transcript of the experiment)."""
    experiments = list(Experiment.objects.order_by("-created_at")[:EXPERIMENTS_SHOWN])
    running = [e for e in experiments if e.status == Experiment.Status.RUNNING]
    slots = slot_counts("experiment_id", [e.pk for e in experiments])
    scores: dict[int, Counter] = defaultdict(Counter)
    for experiment_id, status, n in (
        JudgeScore.objects.filter(transcript__experiment__in=running).order_by()
        .values_list("transcript__experiment_id", "status").annotate(n=Count("*"))
    ):
        scores[experiment_id][status] = n
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
    return render(request, "browse/home.html", {
        "experiments": experiments,
        "running": [e for e in experiments if e.status == Experiment.Status.RUNNING],
        # What has results to read: the newest experiment with finished transcripts.
        "latest": next((e for e in experiments if e.progress["done"]), None),
        "queues": queues,
        "recent": recent,
        "imported_notes": imported_notes(),
    })
