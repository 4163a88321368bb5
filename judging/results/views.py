"""Results of judging: the per-condition table (any rubric versions), re-judging, switching the active
versions, comparisons, and the methods block. Researchers only."""

from __future__ import annotations

import importlib.metadata
from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from analysis import statistics
from analysis.dose_response import DoseResponse
from analysis.paired import PAIRED_ASSUMES
from transcripts.access import researcher_required
from transcripts.aggregates import cell_counts
from transcripts.models import Condition, Endpoint, Experiment, Transcript

from .. import reports
from ..imports.provenance import imported_notes
from ..models import AnnotationQueue, QueueItem, RubricVersion
from ..palette import PALETTE
from ..verdicts import set_active_versions
from . import comparisons, metrics, paper_calibration
from .judge import enqueue

RUBRICS = ("aligned", "coherent", "persona")


def _version(key: str, number: str | None) -> RubricVersion | None:
    if not number or not number.isdigit():
        return None
    return RubricVersion.objects.filter(rubric__key=key, version=int(number)).select_related("rubric").first()


def chosen_versions(experiment: Experiment, params, active: metrics.Versions | None = None) -> metrics.Versions:
    """The versions named in GET/POST params (`aligned=2`), else the experiment's active ones (`active` when the
    caller has looked them up already)."""
    active = active or metrics.active_versions(experiment)
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
    active = metrics.active_versions(experiment)
    versions = chosen_versions(experiment, request.GET, active)
    rows = metrics.condition_metrics(experiment, versions)
    progress = metrics.progress(experiment, versions)
    context = {
        "experiment": experiment,
        "versions": versions,
        "rows": rows,
        "totals": metrics.totals(rows),
        "axes": _varying_axes([r.condition for r in rows]),
        "choices": [
            (key, [
                (v, v == getattr(versions, key), v == getattr(active, key))
                for v in RubricVersion.objects.filter(rubric__key=key).select_related("endpoint", "rubric")
            ])
            for key in RUBRICS
        ],
        "progress": progress,
        # A done count being recounted in the background: the line asks for itself again until it is current.
        "progress_pending": any(counts["done_pending"] for _, counts in progress),
        "query": _query(versions),
        "judge_notes": paper_calibration.judge_notes(versions),
        "verdict_queues": verdict_queues(experiment),
        "docs_pointer": paper_calibration.DOCS_POINTER,
        "imported_notes": imported_notes(experiment),
    }
    template = "judging/results_table.html" if request.htmx else "judging/results.html"
    return render(request, template, context)


def verdict_queues(experiment: Experiment) -> list[AnnotationQueue]:
    """The queues asking auditors for the misaligned flag that hold transcripts of the experiment: the human
    reference its judge can be calibrated against. A semi-join per queue, stopping at its first such item."""
    holds = QueueItem.objects.filter(queue=OuterRef("pk"), transcript__experiment=experiment)
    return list(AnnotationQueue.objects.filter(
        Exists(holds), asks__in=[AnnotationQueue.Asks.VERDICT, AnnotationQueue.Asks.BOTH]
    ).order_by("name"))


@researcher_required
def experiment_calibration_rates(request: HttpRequest, pk: int, queue: int) -> HttpResponse:
    """The results page's summary of a verdict queue's calibration (htmx): the headline rates at the threshold
    pair that best matches the auditors, from the calibration page's own cached report."""
    experiment = get_object_or_404(Experiment, pk=pk)
    verdict_queue = get_object_or_404(AnnotationQueue, pk=queue)
    if verdict_queue not in verdict_queues(experiment):
        raise Http404("This queue holds no misaligned flag on this experiment's transcripts.")
    result = reports.get("calibration-report", queue=verdict_queue.pk, experiment=experiment.pk)
    return render(request, "judging/results_calibration.html", {
        "experiment": experiment, "queue": verdict_queue, "report": result, **(result.value or {}),
        "target": f"calibration-rates-{verdict_queue.pk}",
    })


def dose_response_figure(groups: list[DoseResponse]) -> dict:
    """Plotly figure: per group the measured rates (markers) and the fitted logistic curve on log2(k+1) (line),
    with the 5% and 10% levels the summary table reads off. k is drawn as k+1 on a log axis, labelled k, so
    k = 0 has a place."""
    data, ks = [], set()
    for index, group in enumerate(groups):
        name = " · ".join(str(value) for value in group.group.values())
        colour = PALETTE[index % len(PALETTE)]
        ks.update(point["k"] for point in group.points)
        data.append({
            "type": "scatter", "mode": "markers", "name": f"{name} (measured)", "legendgroup": name,
            "marker": {"color": colour, "size": 8},
            "x": [point["k"] + 1 for point in group.points], "y": [point["rate"] for point in group.points],
            "text": [f"k={point['k']}: {point['misaligned']}/{point['n']}" for point in group.points],
            "hovertemplate": "%{text}<extra></extra>",
        })
        if group.curve:
            data.append({
                "type": "scatter", "mode": "lines", "name": f"{name} (fitted)", "legendgroup": name,
                "line": {"color": colour}, "x": [k + 1 for k, _ in group.curve], "y": [rate for _, rate in group.curve],
                "hovertemplate": "fitted %{y:.1%}<extra></extra>",
            })
    levels = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": level, "y1": level,
               "line": {"dash": "dot", "color": "#b3261e", "width": 1}} for level in (0.05, 0.10)]
    ordered = sorted(ks)
    return {"data": data, "layout": {
        "title": {"text": "Dose-response: misaligned rate vs k, measured and fitted (logistic on log2(k+1))"},
        "xaxis": {"title": {"text": "in-context examples k"}, "type": "log",
                  "tickvals": [k + 1 for k in ordered], "ticktext": [str(k) for k in ordered]},
        "yaxis": {"title": {"text": "misaligned rate"}, "tickformat": ".0%", "rangemode": "tozero"},
        "shapes": levels, "legend": {"orientation": "h", "y": -0.25},
    }}


def unfinished_figure(result: reports.Result, what: str) -> dict | None:
    """A chart whose report has no value yet, or failed: an empty figure that says so (charts.js draws once)."""
    if result.has_value:
        return None
    state = f"failed: {result.error}" if result.error else "computing… (reload the page in a moment)"
    return {"data": [], "layout": {"title": {"text": f"{what}: {state}"}}}


@researcher_required
def experiment_dose_response(request: HttpRequest, pk: int) -> JsonResponse:
    """The dose-response curves of the statistics section (the finest grouping it shows), as a chart."""
    experiment = get_object_or_404(Experiment, pk=pk)
    result = reports.get("results-statistics", experiment=experiment.pk)
    if (figure := unfinished_figure(result, "Dose-response")) is not None:
        return JsonResponse(figure)
    _, groups = result.value["dose_responses"][-1]
    return JsonResponse(dose_response_figure(groups))


@researcher_required
def experiment_statistics(request: HttpRequest, pk: int) -> HttpResponse:
    """The results page's statistics, loaded on their own (htmx) so that the table shows at once. They read
    the verdict cache, that is the experiment's active rubric versions."""
    experiment = get_object_or_404(Experiment, pk=pk)
    result = reports.get("results-statistics", experiment=experiment.pk)
    return render(request, "judging/results_statistics.html", {
        "experiment": experiment, "report": result, **(result.value or {}),
        "wilson_assumes": statistics.WILSON_ASSUMES,
        "clustered_assumes": statistics.CLUSTERED_ASSUMES,
    })


@researcher_required
def experiment_paired_statistics(request: HttpRequest, pk: int) -> HttpResponse:
    """The paired comparisons, loaded after the other statistics (McNemar on matched-pair counts, one query)."""
    experiment = get_object_or_404(Experiment, pk=pk)
    # Without one counted verdict no pair can be tested, whatever the seeds: the page says that (not "no shared
    # seed"), and there is nothing to compute.
    any_counted = experiment.transcripts.filter(misaligned__isnull=False).exists()
    result = reports.get("results-paired", experiment=experiment.pk) if any_counted else None
    paired = result.value["paired"] if result is not None and result.has_value else []
    return render(request, "judging/results_paired.html", {
        "experiment": experiment, "report": result, "paired": paired, "paired_assumes": PAIRED_ASSUMES,
        "any_counted": any_counted,
        # Listed apart, folded: a table of "nothing to test" rows would hide the tests there are.
        "n_unmatched": sum(1 for _, _, test in paired if not (test and test.n_pairs)),
    })


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
    """Two conditions of this experiment, this experiment against another one condition by condition, and the
    trend against k."""
    experiment = get_object_or_404(Experiment, pk=pk)
    active = metrics.active_versions(experiment)
    versions = chosen_versions(experiment, request.GET, active)
    rows = metrics.condition_metrics(experiment, versions)
    by_id = {str(r.condition.pk): r for r in rows}
    pair = None
    a, b = request.GET.get("a"), request.GET.get("b")
    if a in by_id and b in by_id:
        pair = (by_id[a].condition, by_id[b].condition,
                comparisons.compare_rates(by_id[a].misaligned, by_id[b].misaligned))
    other, compared = None, None
    other_pk = request.GET.get("other")
    if other_pk and other_pk.isdigit():
        other = get_object_or_404(Experiment, pk=int(other_pk))
        compared = reports.get("results-matching", experiment=experiment.pk, other=other.pk)
    return render(request, "judging/compare.html", {
        "experiment": experiment, "versions": versions, "rows": rows, "pair": pair, "other": other,
        "report": compared, "matching": compared.value["matching"] if compared and compared.has_value else None,
        "paired_assumes": PAIRED_ASSUMES,
        "experiments": Experiment.objects.exclude(pk=experiment.pk).order_by("name"),
        "trends": comparisons.trend_against_k(rows), "query": _query(versions),
        "a": a, "b": b, "other_pk": other_pk,
    })


# --- methods block -----------------------------------------------------------------------------------------

APP = "em-audit"  # the distribution name in pyproject.toml


def _readiness(result: reports.Result) -> int:
    return ("failed", "computing", "updating", "ready").index(result.state)


def _distinct(conditions: list[Condition], label) -> list:
    return sorted({label(c) for c in conditions})


@researcher_required
def experiment_methods(request: HttpRequest, pk: int) -> HttpResponse:
    """A methods paragraph and the conditions table with n, generated from what the experiment recorded."""
    experiment = get_object_or_404(Experiment.objects.select_related("question_set"), pk=pk)
    versions = metrics.active_versions(experiment)
    rows = metrics.condition_metrics(experiment, versions)
    conditions = [r.condition for r in rows]
    endpoints = Endpoint.objects.in_bulk({c.endpoint_id for c in conditions if c.endpoint_id})
    judges = [(version, reports.get("served-models", experiment=experiment.pk, version=version.pk))
              for version in (versions.aligned, versions.coherent, versions.persona) if version is not None]
    return render(request, "judging/methods.html", {
        "experiment": experiment, "rows": rows, "judges": judges, "imported_notes": imported_notes(experiment),
        # The page waits for the slowest judge's list (the paragraph names them all).
        "report": min((served for _, served in judges), key=_readiness, default=None),
        "models": _distinct(conditions, lambda c: (
            f"{c.model_name} (endpoint {c.endpoint_name} v{endpoints[c.endpoint_id].version})"
            if c.endpoint_id else c.model_name
        )),
        "datasets": _distinct(conditions, lambda c: c.dataset_name or "none"),
        "ks": _distinct(conditions, lambda c: c.k),
        "cot_modes": _distinct(conditions, lambda c: c.get_cot_mode_display()),
        "system_prompts": _distinct(conditions, lambda c: c.system_prompt_name),
        "temperatures": _distinct(conditions, lambda c: f"{c.temperature:g}"),
        "n_questions": len({cell["question_id"] for cell in cell_counts(experiment.transcripts.all())}),
        "totals": metrics.totals(rows),
        "reused": experiment.transcripts.filter(reused_from__isnull=False).count(),
        "n_transcripts": experiment.transcripts.count(),
        "app_version": importlib.metadata.version(APP),
    })


@researcher_required
def experiment_definition(request: HttpRequest, pk: int) -> HttpResponse:
    """The definition the experiment was launched from, as YAML (imported experiments have none)."""
    experiment = get_object_or_404(Experiment, pk=pk)
    if not experiment.spec:
        raise Http404("This experiment was imported; it has no definition.")
    response = HttpResponse(
        yaml.safe_dump(experiment.spec, sort_keys=False, allow_unicode=True), content_type="application/yaml"
    )
    response["Content-Disposition"] = f'attachment; filename="experiment-{experiment.pk}-definition.yaml"'
    return response
