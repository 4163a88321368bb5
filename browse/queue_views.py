"""A new annotation queue filled from a transcript filter: the queue is judging's, the filter browse's, so the page
that joins them lives here (judging never imports browse)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render

from judging.annotation import assignment
from judging.annotation.forms import QueueForm
from judging.annotation.taxonomy import latest_versions
from transcripts.access import researcher_required

from .filters import filter_transcripts


class QueueFromFilterForm(QueueForm):
    """The queue form whose `filter_query` must select finished transcripts; they are `.transcripts` once valid."""

    def clean(self):
        data = super().clean()
        if "filter_query" in data:
            bound = filter_transcripts(QueryDict(data["filter_query"]))
            if not bound.is_valid():
                self.add_error("filter_query", f"Not a valid transcript filter: {bound.errors.as_text()}")
            else:
                self.transcripts = bound.qs.filter(status="done")
                if not self.transcripts.exists():
                    self.add_error("filter_query", "No finished transcript matches this filter.")
        return data


@researcher_required
def queue_create(request: HttpRequest) -> HttpResponse:
    initial = {"filter_query": request.GET.get("filter", ""), "taxonomy": (latest_versions() or [None])[0]}
    form = QueueFromFilterForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        queue = form.save(commit=False)
        queue.created_by = request.user
        queue.save()
        form.save_m2m()
        count = assignment.add_items(queue=queue, transcripts=form.transcripts)
        messages.success(request, f"Queue {queue.name} created with {count} transcripts.")
        return redirect("queue-detail", pk=queue.pk)
    return render(request, "judging/queue_form.html", {"form": form})
