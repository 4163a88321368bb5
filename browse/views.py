"""Researcher pages: the transcript browser and detail page, charts and exports.

Every page takes its filter from the querystring (browse.filters.TranscriptFilter), so any view can
be shared as a link, and the list, detail (previous/next), charts and exports agree on what is selected.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from judging.imports.provenance import imported_notes
from judging.models import Label
from transcripts.access import researcher_required
from transcripts.generation import slot_messages
from transcripts.models import Transcript
from transcripts.paging import DEFAULT_SORT, SORTS, keyset_page, neighbours
from transcripts.rendering import render_markdown

from . import charts, exporting
from .chart_counts import question_table
from .chart_layout import has_points
from .chart_options import (
    AXES,
    DEFAULT_OPTIONS,
    NO_AXIS,
    OPTION_NAMES,
    XSCALES,
    ChartRequest,
    InvalidOptions,
    chart_options,
)
from .filters import filter_transcripts

PAGE_SIZE = 50
# Querystring keys that are not transcript filters: paging and sort of the list, the charts' options.
NOT_FILTERS = ("after", "sort", *OPTION_NAMES)
LIST_COLUMNS = (
    "id", "experiment__name", "condition__model_name", "condition__dataset_name", "condition__k",
    "condition__cot_mode", "question__key", "question__domain", "status", "aligned", "coherent", "misaligned",
    "judge_category", "human_category", "answer",
)


def filter_fields(filterset) -> list[dict]:
    """The filter form as plain data for `_filter_form.html`. Django's widget templates render every
    <option> through its own template include, which cost most of a list page's time; this is one loop."""
    form, data = filterset.form, filterset.data
    fields = []
    for name, field in form.fields.items():
        label = field.label or name.replace("_", " ").capitalize()
        if isinstance(field, django_filters.fields.RangeField):
            fields.append({"kind": "range", "name": name, "label": label,
                           "min": data.get(f"{name}_min", ""), "max": data.get(f"{name}_max", "")})
        elif isinstance(field, forms.NullBooleanField) or hasattr(field, "choices"):
            if isinstance(field, forms.NullBooleanField):
                choices = [("", "any"), ("true", "yes"), ("false", "no")]
            elif isinstance(field, forms.ModelChoiceField):
                # One plain query: iterating field.choices opens a server-side cursor (three round trips).
                choices = [("", "any")] + [(str(obj.pk), field.label_from_instance(obj)) for obj in field.queryset]
            else:
                choices = [("", "any") if value in ("", None) else (str(value), text) for value, text in field.choices]
            current = str(data.get(name, ""))
            fields.append({"kind": "select", "name": name, "label": label,
                           "options": [(value, text, value == current) for value, text in choices]})
        else:
            fields.append({"kind": "text", "name": name, "label": label, "value": data.get(name, "")})
    return fields


def _querystring(request: HttpRequest, *drop: str) -> str:
    params = request.GET.copy()
    for key in drop:
        params.pop(key, None)
    return params.urlencode()


@researcher_required
def transcript_list(request: HttpRequest) -> HttpResponse:
    filterset = filter_transcripts(request.GET)
    sort = request.GET.get("sort") if request.GET.get("sort") in SORTS else DEFAULT_SORT
    page = None
    if filterset.is_valid():
        rows = filterset.qs.select_related("experiment", "condition", "question").only(*LIST_COLUMNS)
        page = keyset_page(rows, sort, request.GET.get("after", ""), PAGE_SIZE)
    context = {
        "filter": filterset,
        "fields": [] if request.htmx else filter_fields(filterset),
        "page": page,
        "sort": sort,
        # The persona filter's choices, already read for the form: key → name, no second query.
        "category_names": {key: name for key, name in filterset.form.fields["judge_category"].choices if key},
        "filter_qs": _querystring(request, "after", "sort"),
        "page_qs": _querystring(request, "after"),
    }
    template = "browse/_transcript_table.html" if request.htmx else "browse/transcript_list.html"
    return render(request, template, context)


def _prompt_summary(transcript: Transcript) -> str:
    condition = transcript.condition
    if condition.k == 0 or not condition.dataset_name:
        return "No in-context examples (control)"
    return f"{condition.k} examples from {condition.dataset_name}, seed {condition.ordering_seed}"


@researcher_required
def transcript_detail(request: HttpRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(
        Transcript.objects.select_related("experiment", "condition__dataset", "condition__endpoint", "question"), pk=pk
    )
    filterset = filter_transcripts(request.GET)
    sort = request.GET.get("sort") if request.GET.get("sort") in SORTS else DEFAULT_SORT
    previous_id, next_id = neighbours(filterset.qs, sort, transcript) if filterset.is_valid() else (None, None)
    try:
        prompt = slot_messages(transcript)
    except ValueError as exc:  # e.g. an imported run whose dataset has fewer examples than its k
        prompt, prompt_error = [], str(exc)
    else:
        prompt_error = ""
    # Every queue's labels of the transcript in one query.
    labels = Label.objects.filter(item__transcript=transcript).select_related(
        "auditor", "primary"
    ).order_by("item__queue", "item__position", "created_at")
    return render(request, "browse/transcript_detail.html", {
        "imported_notes": imported_notes(transcript.experiment),
        "whole_page": True,
        "t": transcript,
        "prompt_summary": _prompt_summary(transcript),
        "prompt": prompt,
        "prompt_error": prompt_error,
        "reasoning_html": render_markdown(transcript.reasoning),
        "answer_html": render_markdown(transcript.answer),
        "scores": transcript.judge_scores.select_related(
            "rubric_version__rubric", "rubric_version__endpoint", "category"
        ).defer("raw_text", "top_logprobs").order_by(  # the judge's whole reply is not shown here
            "rubric_version__rubric__key", "-rubric_version__version"
        ),
        "labels": list(labels),
        "previous_id": previous_id,
        "next_id": next_id,
        "filter_qs": _querystring(request, "after"),
    })


# Every export format: the streamed ones, and an Inspect eval log.
EXPORT_FORMATS = [*exporting.FORMATS, "eval"]


def export_response(queryset, fmt: str) -> HttpResponse:
    """A streamed download of the queryset (also used by the API); an Inspect log is written whole, then sent."""
    if fmt == "eval":
        return _inspect_log_response(queryset)
    if fmt not in exporting.FORMATS:
        raise Http404("Unknown export format.")
    content_type, iterator = exporting.FORMATS[fmt]
    response = StreamingHttpResponse(iterator(queryset), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="transcripts-{stamp}.{fmt}"'
    return response


def _inspect_log_response(queryset) -> HttpResponse:
    # inspect_ai takes a second to import: only an Inspect export pays for it.
    from . import inspect_export

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "log.eval"
        try:
            inspect_export.write_log(queryset, path)
        except inspect_export.TooManySamples as exc:
            return HttpResponse(str(exc), status=400, content_type="text/plain")
        # Opened before its directory goes: the open file stays readable until the response has sent and closed it.
        handle = path.open("rb")
    return FileResponse(handle, as_attachment=True, filename=f"transcripts-{stamp}.eval",
                        content_type="application/zip")


@researcher_required
def transcript_export(request: HttpRequest, fmt: str) -> HttpResponse:
    filterset = filter_transcripts(request.GET)
    if not filterset.is_valid():
        return HttpResponse(filterset.errors.as_text(), status=400, content_type="text/plain")
    return export_response(filterset.qs, fmt)


def _filter_params(request: HttpRequest) -> dict[str, str]:
    """The filter part of the querystring, carried into the charts' links to transcripts."""
    return {key: value for key, value in request.GET.items() if key not in NOT_FILTERS and value}


def chart_request_from(request: HttpRequest, filterset) -> ChartRequest:
    """The chart options and the filter of a chart page or chart data request (raises InvalidOptions)."""
    return ChartRequest(
        options=chart_options(request.GET),
        experiment=filterset.form.cleaned_data.get("experiment"),
        filters=_filter_params(request),
    )


def _option_fields(request: HttpRequest) -> list[dict]:
    """The chart options as extra selects of the filter form (`_filter_form.html`), so they live in the URL."""
    axes = [(name, axis.label) for name, axis in AXES.items()] + [(NO_AXIS, "nothing")]
    fields = []
    for name, label, choices in (("colour", "Colour by", axes), ("facet", "Panels by", axes),
                                 ("xscale", "k axis (first chart)", list(XSCALES.items()))):
        current = request.GET.get(name) or getattr(DEFAULT_OPTIONS, name) or NO_AXIS
        fields.append({"kind": "select", "name": name, "label": label,
                       "options": [(value, text, value == current) for value, text in choices]})
    return fields


def chart_context(request: HttpRequest, filterset, *, with_options: bool) -> dict:
    option_errors = {}
    if with_options:
        try:
            chart_options(request.GET)
        except InvalidOptions as exc:
            option_errors = exc.errors
    experiment = filterset.form.cleaned_data.get("experiment") if filterset.is_valid() else None
    return {
        "filter": filterset,
        "imported_notes": imported_notes(experiment),
        "whole_page": experiment is not None,
        "fields": (_option_fields(request) if with_options else []) + filter_fields(filterset),
        "option_errors": option_errors,
        "chart_qs": _querystring(request, "after", "sort"),
        "filter_qs": _querystring(request, *NOT_FILTERS),
    }


NO_TRANSCRIPTS = "Nothing to plot: no transcript matches these filters. Widen the filters, or run an experiment."
NOTHING_TO_PLOT = (
    "Nothing to plot yet: none of the matching transcripts has a counted verdict. A transcript counts once both "
    "judges (aligned and coherent) gave it a score; refusals, code and \"unsure\" verdicts are left out, as in the "
    "paper. The results page says how many are judged, unsure or still waiting for the judge."
)


@researcher_required
def chart_page(request: HttpRequest) -> HttpResponse:
    filterset = filter_transcripts(request.GET)
    return render(request, "browse/charts.html", {
        **chart_context(request, filterset, with_options=True), "charts": charts.OVERVIEW,
    })


@researcher_required
def question_results(request: HttpRequest) -> HttpResponse:
    """Per-question results: the question × k heatmap per model and the question table."""
    filterset = filter_transcripts(request.GET)
    # The heatmap is always split by model and the table not at all: the chart options do not apply here.
    context = chart_context(request, filterset, with_options=False)
    rows = None
    if filterset.is_valid():
        rows = question_table(filterset.qs, _filter_params(request))
    return render(request, "browse/charts_questions.html", {**context, "rows": rows})


@researcher_required
def chart_data(request: HttpRequest, name: str) -> JsonResponse:
    if name not in charts.CHARTS:
        raise Http404("Unknown chart.")
    filterset = filter_transcripts(request.GET)
    if not filterset.is_valid():
        return JsonResponse({"errors": filterset.errors.get_json_data()}, status=400)
    try:
        chart_request = chart_request_from(request, filterset)
    except InvalidOptions as exc:
        return JsonResponse({"errors": exc.errors}, status=400)
    figure = charts.CHARTS[name](filterset.qs, chart_request)
    if reason := empty_reason(figure, filterset.qs):
        figure["empty"] = reason
    return JsonResponse(figure)


def empty_reason(figure: dict, transcripts: QuerySet) -> str:
    """Why a chart has nothing to draw, or "" when it has points."""
    if has_points(figure):
        return ""
    return NOTHING_TO_PLOT if transcripts.exists() else NO_TRANSCRIPTS
