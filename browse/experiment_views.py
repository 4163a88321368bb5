"""An experiment's page: its live progress and conditions (transcripts), with its results and methods
(judging) linked and loaded in place."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from transcripts.access import may_run, researcher_required
from transcripts.experiment_views import progress_context
from transcripts.models import Experiment


@researcher_required
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    return render(request, "browse/experiment_detail.html", {
        **progress_context(experiment), "may_run": may_run(request.user, experiment),
    })
