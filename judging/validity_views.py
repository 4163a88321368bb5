"""Is the judge right? Judge vs judge on an experiment, gold suites with their drift history, and span
agreement between auditors. Researchers only; the figures come from judging.judge_agreement, gold and spans."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transcripts.access import researcher_required
from transcripts.models import Experiment

from . import cached, gold, judge_agreement
from .models import AnnotationQueue, GoldRun, GoldSuite, RubricVersion
from .verdicts import Versions, active_versions

RUBRICS = ("aligned", "coherent", "persona")


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
    context = {"experiment": experiment, "form_a": form_a, "form_b": form_b}
    if a is not None and b is not None:
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


def _compared(experiment: Experiment, a: Versions, b: Versions) -> cached.Result:
    return cached.get("judge-vs-judge", experiment=experiment.pk, a=judge_agreement.side_ids(a),
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
        "summary": cached.value("gold-summary", suite=suite.pk),
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
    report = cached.get("span-agreement", queue=queue.pk)
    return render(request, "judging/validity_spans.html", {"queue": queue, "report": report, **(report.value or {})})

