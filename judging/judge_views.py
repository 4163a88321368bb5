"""Results of judging: the per-condition table (any rubric versions), re-judging, switching the active
versions, and comparisons. Researchers only."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from transcripts.access import researcher_required
from transcripts.models import Condition, Experiment, Transcript

from . import calibration, comparisons, metrics
from .judge import enqueue
from .models import RubricVersion
from .verdicts import set_active_versions

RUBRICS = ("aligned", "coherent", "persona")


def _version(key: str, number: str | None) -> RubricVersion | None:
    if not number or not number.isdigit():
        return None
    return RubricVersion.objects.filter(rubric__key=key, version=int(number)).select_related("rubric").first()


def chosen_versions(experiment: Experiment, params) -> metrics.Versions:
    """The versions named in GET/POST params (`aligned=2`), else the experiment's active ones."""
    active = metrics.active_versions(experiment)
    return metrics.Versions(**{
        key: _version(key, params.get(key)) or getattr(active, key) for key in RUBRICS
    })


def _query(versions: metrics.Versions) -> str:
    return urlencode({key: getattr(versions, key).version for key in RUBRICS if getattr(versions, key)})


def _varying_axes(conditions: list[Condition]) -> list[str]:
    """The optional columns worth showing: system prompt and temperature only when they vary."""
    return [axis for axis in ("system_prompt_name", "temperature")
            if len({getattr(c, axis) for c in conditions}) > 1]


@researcher_required
def experiment_results(request: HttpRequest, pk: int) -> HttpResponse:
    """The results table. htmx requests (the experiment page loads it) get the fragment only."""
    experiment = get_object_or_404(Experiment, pk=pk)
    versions = chosen_versions(experiment, request.GET)
    active = metrics.active_versions(experiment)
    rows = metrics.condition_metrics(experiment, versions)
    context = {
        "experiment": experiment,
        "versions": versions,
        "rows": rows,
        "axes": _varying_axes([r.condition for r in rows]),
        "choices": [
            (key, [
                (v, v == getattr(versions, key), v == getattr(active, key))
                for v in RubricVersion.objects.filter(rubric__key=key).select_related("endpoint", "rubric")
            ])
            for key in RUBRICS
        ],
        "progress": metrics.progress(experiment, versions),
        "query": _query(versions),
        "judge_notes": calibration.judge_notes(versions),
        "docs_pointer": calibration.DOCS_POINTER,
    }
    template = "judging/results_table.html" if request.htmx else "judging/results.html"
    return render(request, template, context)


def _results_url(experiment: Experiment, versions: metrics.Versions) -> str:
    return f"{reverse('experiment-results', args=[experiment.pk])}?{_query(versions)}"


@require_POST
@researcher_required
def experiment_rejudge(request: HttpRequest, pk: int) -> HttpResponse:
    """Judge every finished transcript of the experiment with the chosen versions. Verdicts that exist are
    kept (one per transcript × version); failed ones are tried again."""
    experiment = get_object_or_404(Experiment, pk=pk)
    versions = chosen_versions(experiment, request.POST)
    only = request.POST.get("rubric")
    chosen = [getattr(versions, key) for key in RUBRICS if getattr(versions, key) and only in (None, "", key)]
    done = experiment.transcripts.filter(status=Transcript.Status.DONE)
    queued = enqueue(done, chosen, retry_failed=True)
    names = ", ".join(f"{v.rubric.key} v{v.version}" for v in chosen)
    messages.success(request, f"Queued {queued} judge requests ({names}); existing verdicts are kept.")
    return redirect(_results_url(experiment, versions))


@require_POST
@researcher_required
def experiment_activate(request: HttpRequest, pk: int) -> HttpResponse:
    """Make the chosen versions the ones that judge new transcripts and fill the transcript filters."""
    experiment = get_object_or_404(Experiment, pk=pk)
    versions = chosen_versions(experiment, request.POST)
    set_active_versions(experiment, **{key: getattr(versions, key) for key in RUBRICS})
    messages.success(request, "Active rubric versions changed; transcript verdicts recomputed.")
    return redirect(_results_url(experiment, versions))


@researcher_required
def experiment_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two conditions of this experiment, or this experiment against another one, and the trend against k."""
    experiment = get_object_or_404(Experiment, pk=pk)
    versions = chosen_versions(experiment, request.GET)
    thresholds = (experiment.aligned_threshold, experiment.coherent_threshold)
    rows = metrics.condition_metrics(experiment, versions)
    by_id = {str(r.condition.pk): r for r in rows}
    pair = None
    a, b = request.GET.get("a"), request.GET.get("b")
    if a in by_id and b in by_id:
        pair = (by_id[a].condition, by_id[b].condition,
                comparisons.compare_rates(by_id[a].misaligned, by_id[b].misaligned))
    other = None
    other_pk = request.GET.get("other")
    if other_pk and other_pk.isdigit():
        other_experiment = get_object_or_404(Experiment, pk=int(other_pk))
        other_versions = metrics.active_versions(other_experiment)
        other = (
            other_experiment, other_versions,
            comparisons.compare_rates(
                metrics.pooled_rate([experiment.pk], versions, thresholds),
                metrics.pooled_rate(
                    [other_experiment.pk], other_versions,
                    (other_experiment.aligned_threshold, other_experiment.coherent_threshold),
                ),
            ),
        )
    return render(request, "judging/compare.html", {
        "experiment": experiment, "versions": versions, "rows": rows, "pair": pair, "other": other,
        "experiments": Experiment.objects.exclude(pk=experiment.pk).order_by("name"),
        "trends": comparisons.trend_against_k(rows), "query": _query(versions),
        "a": a, "b": b, "other_pk": other_pk,
    })
