"""The publication figure of the charts page's current view (browse.figure): a page with the figure, its files
(SVG, PDF, PNG) and its methods paragraph. Researchers only, as every chart."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from transcripts.access import researcher_required

from .chart_options import InvalidOptions
from .filters import filter_transcripts
from .views import chart_context, chart_request_from, empty_reason


def _figure(request: HttpRequest):
    """(figure module, filterset, figure dict), or an HttpResponse saying what is wrong with the querystring."""
    # matplotlib takes half a second to import: only the figure's requests pay for it.
    from . import figure

    filterset = filter_transcripts(request.GET)
    if not filterset.is_valid():
        return HttpResponse(filterset.errors.as_text(), status=400, content_type="text/plain")
    try:
        chart_request = chart_request_from(request, filterset)
    except InvalidOptions as exc:
        return HttpResponse(str(exc.errors), status=400, content_type="text/plain")
    return figure, filterset, figure.figure_for(filterset.qs, chart_request)


@researcher_required
def figure_page(request: HttpRequest) -> HttpResponse:
    found = _figure(request)
    if isinstance(found, HttpResponse):
        return found
    figure, filterset, drawn = found
    return render(request, "browse/figure.html", {
        **chart_context(request, filterset, with_options=True),
        "paragraph": figure.methods_paragraph(filterset.qs, drawn), "formats": list(figure.FORMATS),
        "empty": empty_reason(drawn, filterset.qs),
    })


@researcher_required
def figure_file(request: HttpRequest, fmt: str) -> HttpResponse:
    found = _figure(request)
    if isinstance(found, HttpResponse):
        return found
    figure, _, drawn = found
    if fmt not in figure.FORMATS:
        raise Http404("Unknown figure format.")
    response = HttpResponse(figure.draw(drawn, fmt), content_type=figure.FORMATS[fmt])
    # Inline, so the page can show the PNG; its links download with this name.
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'inline; filename="misaligned-vs-k-{stamp}.{fmt}"'
    return response
