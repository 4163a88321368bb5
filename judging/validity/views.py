"""Is the judge right? Judge vs judge on an experiment, gold suites with their drift history, span agreement
between auditors, and the judge calibrated against a verdict queue's human flags (its page, its two curves as
plotly JSON drawn by static/js/charts.js, and the transcripts behind each cell of its 2×2 tables). Researchers
only; the figures come from judging.validity (judge_agreement, gold, human_calibration) and
judging.annotation.spans."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from transcripts.access import researcher_required
from transcripts.models import Experiment, Transcript

from .. import reports
from ..models import AnnotationQueue, GoldRun, GoldSuite, JudgeScore, Label, RubricVersion
from ..verdicts import Versions, active_versions
from . import gold, human_calibration, judge_agreement

RUBRICS = ("aligned", "coherent", "persona")
CURVES = ("roc", "pr")


def _version_field(key: str) -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        RubricVersion.objects.filter(rubric__key=key).select_related("rubric", "endpoint"), required=False,
        label=key,
    )


class VersionsForm(forms.Form):
    """One judge: its aligned, coherent and persona versions (any may be left out)."""

    def __init__(self, *args, prefix: str | None = None, **kwargs):
        super().__init__(*args, prefix=prefix, **kwargs)
        for key in RUBRICS:
            self.fields[key] = _version_field(key)

    def versions(self) -> Versions:
        return Versions(**{key: self.cleaned_data.get(key) for key in RUBRICS})


def _pair_forms(request: HttpRequest, experiment: Experiment) -> tuple[VersionsForm, VersionsForm]:
    """Side A defaults to the experiment's active versions; side B is what the researcher picks."""
    if "a-aligned" in request.GET:
        a = VersionsForm(request.GET, prefix="a")
    else:  # only an empty form needs the defaults (finding them may search the experiment's verdicts)
        active = active_versions(experiment)
        a = VersionsForm(prefix="a", initial={key: getattr(active, key) for key in RUBRICS})
    b = VersionsForm(request.GET if "b-aligned" in request.GET else None, prefix="b")
    return a, b


def _chosen(form: VersionsForm) -> Versions | None:
    if not form.is_bound or not form.is_valid():
        return None
    versions = form.versions()
    return versions if any(getattr(versions, key) for key in RUBRICS) else None


@researcher_required
def judge_vs_judge(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    form_a, form_b = _pair_forms(request, experiment)
    a, b = _chosen(form_a), _chosen(form_b)
    context = {"experiment": experiment, "form_a": form_a, "form_b": form_b, "judged": True}
    if a is None or b is None:  # nothing compared yet: say so if there is nothing to compare
        context["judged"] = JudgeScore.objects.filter(transcript__experiment=experiment).exists()
    else:
        report = _compared(experiment, a, b)
        context.update({
            "query": request.GET.urlencode(), "report": report, "result": report.value,
            "a_name": judge_agreement.side_name(a), "b_name": judge_agreement.side_name(b),
            "charts": [score for score in judge_agreement.SCORES if getattr(a, score) and getattr(b, score)],
        })
    return render(request, "judging/validity_judges.html", context)


@researcher_required
def judge_vs_judge_scatter(request: HttpRequest, pk: int, score: str) -> JsonResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    form_a, form_b = _pair_forms(request, experiment)
    a, b = _chosen(form_a), _chosen(form_b)
    if score not in judge_agreement.SCORES or a is None or b is None or not getattr(a, score) or not getattr(b, score):
        raise Http404("Choose both judges' versions for this score.")
    report = _compared(experiment, a, b)
    if not report.has_value:
        raise Http404("The figures of these two judges are not computed yet.")
    return JsonResponse(report.value["scatter"][score])


def _compared(experiment: Experiment, a: Versions, b: Versions) -> reports.Result:
    return reports.get("judge-vs-judge", experiment=experiment.pk, a=judge_agreement.side_ids(a),
                      b=judge_agreement.side_ids(b))


# ---- gold suites -------------------------------------------------------------------------------------------


class FreezeForm(forms.Form):
    queue = forms.ModelChoiceField(AnnotationQueue.objects.all(), help_text="Its adjudicated categories and "
                                   "majority misaligned flags become the gold.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if GoldSuite.objects.filter(name=name).exists():
            raise forms.ValidationError("A gold suite of this name exists.")
        return name


@researcher_required
def gold_list(request: HttpRequest) -> HttpResponse:
    form = FreezeForm(request.POST or None, initial={"queue": request.GET.get("queue")})
    if request.method == "POST" and form.is_valid():
        suite = gold.freeze(queue=form.cleaned_data["queue"], name=form.cleaned_data["name"],
                            description=form.cleaned_data["description"], user=request.user)
        if not suite.items.exists():
            messages.warning(request, "The queue has no adjudicated or majority-flagged item yet: the suite is empty.")
        return redirect("gold-detail", pk=suite.pk)
    suites = GoldSuite.objects.select_related("source_queue", "created_by").order_by("-frozen_at")
    return render(request, "judging/gold_list.html", {"suites": suites, "form": form})


@researcher_required
def gold_detail(request: HttpRequest, pk: int) -> HttpResponse:
    suite = get_object_or_404(GoldSuite.objects.select_related("source_queue", "created_by"), pk=pk)
    gold.record_complete_runs(suite)
    histories = [(kind, label, gold.history(suite, kind)) for kind, label in GoldRun.Kind.choices]
    return render(request, "judging/gold_detail.html", {
        "suite": suite,
        "summary": reports.value("gold-summary", suite=suite.pk),
        "histories": histories,
        "drifted": [row for _, _, rows in histories for row in rows if row.drift],
        "pending": gold.pending_runs(suite),
        "form": VersionsForm(prefix="run"),
    })


@require_POST
@researcher_required
def gold_run(request: HttpRequest, pk: int) -> HttpResponse:
    suite = get_object_or_404(GoldSuite, pk=pk)
    form = VersionsForm(request.POST, prefix="run")
    versions = form.versions() if form.is_valid() else None
    if versions is None or not (versions.persona or (versions.aligned and versions.coherent)):
        messages.error(request, "Choose an aligned and a coherent version (the flag), a persona version, or both.")
        return redirect("gold-detail", pk=suite.pk)
    runs = gold.request_run(suite, versions)
    messages.success(request, "Running " + "; ".join(run.judge_name for run in runs)
                     + " on the suite: its agreement is recorded once every verdict is in.")
    return redirect("gold-detail", pk=suite.pk)


# ---- spans -------------------------------------------------------------------------------------------------


@researcher_required
def queue_spans(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    report = reports.get("span-agreement", queue=queue.pk)
    return render(request, "judging/validity_spans.html", {"queue": queue, "report": report, **(report.value or {})})


# ---- calibration against human flags -----------------------------------------------------------------------

CELL_PER_PAGE = 100  # transcripts a page of one cell of the 2×2 table, in id order


class ThresholdsForm(forms.Form):
    """Which experiment of the queue, and (for a cell's transcripts) which judge flag, human flag and pair."""

    experiment = forms.IntegerField(required=False)
    aligned = forms.FloatField(required=False, min_value=0, max_value=101)
    coherent = forms.FloatField(required=False, min_value=0, max_value=100)
    judge = forms.TypedChoiceField(choices=[("1", "1"), ("0", "0")], coerce=lambda v: v == "1", required=False)
    human = forms.TypedChoiceField(choices=[("1", "1"), ("0", "0")], coerce=lambda v: v == "1", required=False)


def _context(request: HttpRequest, pk: int) -> tuple[AnnotationQueue, Experiment, list[dict], dict]:
    """The verdict queue, the chosen experiment of its transcripts (the one with most items by default), all
    of its experiments, and the valid query parameters."""
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    if not queue.asks_verdict:
        raise Http404("This queue does not ask auditors for the misaligned flag.")
    form = ThresholdsForm(request.GET)
    if not form.is_valid():
        raise Http404("Malformed parameters.")
    experiments = reports.value("calibration-experiments", queue=queue.pk)
    wanted = form.cleaned_data["experiment"] or (experiments[0]["id"] if experiments else None)
    if wanted not in {e["id"] for e in experiments}:
        raise Http404("The queue holds no transcript of this experiment.")
    return queue, get_object_or_404(Experiment, pk=wanted), experiments, form.cleaned_data


def _table(queue: AnnotationQueue, experiment: Experiment, result: dict) -> list[dict]:
    """The 2×2 rows (judge flag) × columns (human flag), each cell with the URL of its transcripts."""
    base = reverse("queue-calibration-cell", args=[queue.pk])
    names = {True: "tp", False: "fp"}, {True: "fn", False: "tn"}
    rows = []
    for judge, by_human in zip((True, False), names, strict=True):
        cells = []
        for human in (True, False):
            params = {"experiment": experiment.pk, "aligned": result["aligned_threshold"],
                      "coherent": result["coherent_threshold"], "judge": int(judge), "human": int(human)}
            cells.append({"n": result["confusion"][by_human[human]], "name": by_human[human],
                          "url": f"{base}?{urlencode(params)}"})
        rows.append({"judge": judge, "cells": cells})
    return rows


@researcher_required
def queue_calibration(request: HttpRequest, pk: int) -> HttpResponse:
    queue, experiment, experiments, _ = _context(request, pk)
    result = reports.get("calibration-report", queue=queue.pk, experiment=experiment.pk)
    report = dict(result.value or {})
    for key in ("current", "best_metrics"):
        if report.get(key) is not None:
            report[key] = {**report[key], "table": _table(queue, experiment, report[key])}
    return render(request, "judging/calibration.html", {
        "queue": queue, "experiment": experiment, "experiments": experiments, "report": result, **report,
        "curve_urls": {name: reverse("queue-calibration-curve", args=[queue.pk, name])
                       + f"?experiment={experiment.pk}" for name in CURVES},
    })


def _figure(name: str, points: list[dict], marks: dict[str, float]) -> dict:
    """A plotly figure of the ROC (false vs true positive rate) or precision–recall curve, with the current
    and best aligned thresholds marked."""
    x_key, y_key = ("fpr", "tpr") if name == "roc" else ("tpr", "precision")
    shown = [p for p in points if p[x_key] is not None and p[y_key] is not None]
    data = [{
        "type": "scatter", "mode": "lines+markers", "name": "aligned threshold",
        "x": [p[x_key] for p in shown], "y": [p[y_key] for p in shown],
        "text": [f"aligned < {p['aligned_threshold']:g}" for p in shown], "hoverinfo": "text+x+y",
    }]
    for label, threshold in marks.items():
        at = [p for p in shown if p["aligned_threshold"] == threshold]
        if at:
            data.append({"type": "scatter", "mode": "markers", "name": f"{label} (aligned < {threshold:g})",
                         "x": [at[0][x_key]], "y": [at[0][y_key]], "marker": {"size": 12}})
    titles = {"fpr": "false positive rate", "tpr": "true positive rate (recall)", "precision": "precision"}
    title = "ROC over the aligned threshold" if name == "roc" else "Precision–recall over the aligned threshold"
    return {"data": data, "layout": {
        "title": {"text": title},
        "xaxis": {"title": {"text": titles[x_key]}, "range": [0, 1.02]},
        "yaxis": {"title": {"text": titles[y_key]}, "range": [0, 1.02]},
    }}


@researcher_required
def queue_calibration_curve(request: HttpRequest, pk: int, name: str) -> JsonResponse:
    """One curve over the aligned threshold at the experiment's coherent threshold (no bootstrap: cheap)."""
    if name not in CURVES:
        raise Http404("No such curve.")
    queue, experiment, _, _ = _context(request, pk)
    s = human_calibration.cached_sample(queue, experiment)
    current = (experiment.aligned_threshold, experiment.coherent_threshold)
    return JsonResponse(_figure(name, human_calibration.curves(s, current), {"current": current[0]}))


@researcher_required
def queue_calibration_cell(request: HttpRequest, pk: int) -> HttpResponse:
    """The transcripts of one 2×2 cell: judge flag × human consensus flag at a threshold pair."""
    queue, experiment, _, params = _context(request, pk)
    if params["judge"] is None or params["human"] is None:
        raise Http404("Say which cell: judge=0/1 and human=0/1.")
    aligned = experiment.aligned_threshold if params["aligned"] is None else params["aligned"]
    coherent = experiment.coherent_threshold if params["coherent"] is None else params["coherent"]
    s = human_calibration.cached_sample(queue, experiment)
    in_cell = human_calibration.cell_transcripts(s, aligned, coherent, judge=params["judge"], human=params["human"])
    # The cell's ids are in the cached sample already: a page is a slice of them, counted without a query.
    page = Paginator(in_cell, CELL_PER_PAGE).get_page(request.GET.get("page"))
    transcripts = Transcript.objects.filter(pk__in=page.object_list).select_related("question", "condition").only(
        "question__key", "condition__model_name", "condition__k", "aligned", "coherent"  # not the texts
    ).order_by("pk")
    votes: dict[int, list[bool]] = {}
    for transcript_id, flag in Label.objects.filter(
        item__queue=queue, item__transcript_id__in=page.object_list, misaligned__isnull=False
    ).values_list("item__transcript_id", "misaligned"):
        votes.setdefault(transcript_id, []).append(flag)
    rows = [{"transcript": t, "misaligned_votes": sum(votes.get(t.pk, [])), "votes": len(votes.get(t.pk, []))}
            for t in transcripts]
    others = request.GET.copy()  # the page links keep the cell and its thresholds
    others.pop("page", None)
    return render(request, "judging/calibration_cell.html", {
        "queue": queue, "experiment": experiment, "rows": rows, "aligned": aligned, "coherent": coherent,
        "judge": params["judge"], "human": params["human"], "page": page, "cell_qs": others.urlencode(),
    })
