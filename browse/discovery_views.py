"""The researcher's discovery pages: cluster runs over a transcript filter, their map and tables, and "more like
this". The clusters are discovery's, the filter browse's, so the pages that join them live here (discovery never
imports browse). Auditors never see them: every view is researcher-only, and cluster names, maps and neighbours'
verdicts appear nowhere in the annotation workspace."""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from discovery import embedding, findings, tables, tasks
from discovery.filtering import cluster_value
from discovery.models import Cluster, ClusterMember, ClusterRun
from judging.annotation.taxonomy import latest_versions
from judging.models import Taxonomy
from transcripts.access import researcher_required
from transcripts.models import Endpoint, Transcript

from .filters import filter_transcripts

MAP_POINTS = 20000  # drawn at most (a seeded sample beyond): a browser draws 20k WebGL points smoothly
SVG_POINTS = 5000  # up to this many, plain SVG markers: no WebGL needed (charts.js falls back to them anyway)
COLOURS = {"cluster": "Cluster", "model": "Model", "k": "k", "misaligned": "Judge verdict"}


def _filtered(query: str):
    bound = filter_transcripts(QueryDict(query))
    if not bound.is_valid():
        raise forms.ValidationError(f"Not a valid transcript filter: {bound.errors.as_text()}")
    return bound.qs.filter(status=Transcript.Status.DONE)


class RunForm(forms.ModelForm):
    class Meta:
        model = ClusterRun
        fields = ["name", "filter_query", "algorithm", "n_clusters", "min_cluster_size", "seed", "naming_endpoint"]
        widgets = {"filter_query": forms.TextInput(attrs={"placeholder": "experiment=3&misaligned=true"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any chat endpoint names clusters; the embedding one answers no chat.
        embedder = embedding.config()
        self.fields["naming_endpoint"].queryset = Endpoint.objects.filter(is_current=True).exclude(
            name=embedder.endpoint_name if embedder else "").order_by("name")
        self.fields["naming_endpoint"].required = False

    def clean(self):
        data = super().clean()
        self.endpoint = embedding.current_endpoint()
        if self.endpoint is None:
            raise forms.ValidationError("No embedding endpoint is configured (an admin adds one).")
        if data.get("algorithm") == ClusterRun.Algorithm.KMEANS and not data.get("n_clusters"):
            self.add_error("n_clusters", "k-means needs the number of clusters.")
        try:
            self.transcripts = _filtered(data.get("filter_query", ""))
        except forms.ValidationError as error:
            self.add_error("filter_query", error)
        return data


class EmbedForm(forms.Form):
    filter_query = forms.CharField(required=False, max_length=4000)


@researcher_required
def discovery_home(request: HttpRequest) -> HttpResponse:
    endpoint = embedding.current_endpoint()
    form = RunForm(request.POST or None, initial={"filter_query": request.GET.get("filter", ""), "seed": 0})
    if request.method == "POST" and form.is_valid():
        run = form.save(commit=False)
        run.endpoint, run.created_by = form.endpoint, request.user
        run.transcript_ids = list(form.transcripts.order_by("pk").values_list("pk", flat=True))
        run.save()
        transaction.on_commit(lambda: tasks.cluster.delay(run.pk))
        return redirect("discovery-run", pk=run.pk)
    vectors = embedding.vector_counts(endpoint) if endpoint is not None else {}
    return render(request, "browse/discovery.html", {
        "form": form, "endpoint": endpoint, "vectors": vectors, "runs": ClusterRun.objects.all()[:50],
        "filter_query": request.GET.get("filter", ""),
    })


@researcher_required
@require_POST
def discovery_embed(request: HttpRequest) -> HttpResponse:
    """Embed the filter's finished transcripts (imported ones, or ones finished before embedding was set up)."""
    form = EmbedForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not a valid filter.")
        return redirect("discovery")
    try:
        transcripts = _filtered(form.cleaned_data["filter_query"])
    except forms.ValidationError as error:
        messages.error(request, error.messages[0])
        return redirect("discovery")
    if embedding.current_endpoint() is None:
        messages.error(request, "No embedding endpoint is configured (an admin adds one).")
        return redirect("discovery")
    added = embedding.enqueue_all(transcripts, retry_failed=True)
    messages.success(request, f"{added} texts queued for embedding.")
    return redirect("discovery")


@researcher_required
def discovery_run(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(ClusterRun, pk=pk)
    clusters = list(run.clusters.order_by("label"))
    samples = dict(Transcript.objects.filter(pk__in={t for c in clusters for t in c.sample}).values_list(
        "pk", "reasoning"))
    list_url = reverse("transcript-list")
    for cluster in clusters:
        value = urlencode({"cluster": cluster_value(run, cluster.label)})
        cluster.list_url = f"{list_url}?{value}"
        cluster.queue_url = f"{reverse('queue-create')}?{urlencode({'filter': value})}"
        cluster.export_url = f"{reverse('transcript-export', args=['csv'])}?{value}"
        cluster.samples = [(t, samples.get(t, "")) for t in cluster.sample]
    return render(request, "browse/discovery_run.html", {
        "run": run, "clusters": clusters, "colours": COLOURS,
        "tables": tables.tables(run) if run.status == ClusterRun.Status.DONE else [],
        "taxonomies": latest_versions(), "refresh": run.status in (ClusterRun.Status.PENDING,
                                                                   ClusterRun.Status.RUNNING),
    })


def _plain(text: str) -> str:
    """Model-written text for a plotly label: plotly reads a few HTML tags in labels, so none may pass."""
    return text.replace("<", "‹").replace(">", "›")


@researcher_required
def discovery_map(request: HttpRequest, pk: int) -> JsonResponse:
    """The run's 2-D map as a plotly figure, coloured by cluster, model, k or judge verdict; clicking a point
    opens its cluster's transcripts."""
    run = get_object_or_404(ClusterRun, pk=pk)
    colour = request.GET.get("colour", "cluster")
    if colour not in COLOURS:
        colour = "cluster"
    members = ClusterMember.objects.filter(run=run)
    total = members.count()
    if total == 0:
        return JsonResponse({"empty": "This run has no points yet."})
    rows = list(members.values_list("transcript_id", "label", "x", "y", "transcript__condition__model_name",
                                    "transcript__condition__k", "transcript__misaligned"))
    if len(rows) > MAP_POINTS:
        keep = np.sort(np.random.default_rng(run.seed).choice(len(rows), MAP_POINTS, replace=False))
        rows = [rows[i] for i in keep]
    names = {c.label: _plain(str(c)) for c in run.clusters.all()}
    list_url = reverse("transcript-list")
    verdicts = {True: "misaligned", False: "aligned", None: "not judged"}
    groups: dict[str, list] = {}
    for transcript, label, x, y, model, k, misaligned in rows:
        key = {"cluster": f"{label}: {names.get(label, label)}" if label >= 0 else "noise", "model": _plain(model),
               "k": f"k = {k}", "misaligned": verdicts[misaligned]}[colour]
        groups.setdefault(key, []).append((transcript, label, x, y))
    traces = []
    for key, points in sorted(groups.items()):
        traces.append({
            "type": "scatter" if len(rows) <= SVG_POINTS else "scattergl", "mode": "markers", "name": key[:60],
            "x": [p[2] for p in points], "y": [p[3] for p in points],
            "text": [f"transcript {p[0]} · cluster {p[1]}" for p in points],
            "customdata": [f"{list_url}?{urlencode({'cluster': cluster_value(run, p[1])})}" for p in points],
            "hoverinfo": "text", "marker": {"size": 6, "opacity": 0.8},
        })
    return JsonResponse({
        "data": traces,
        "layout": {"title": {"text": f"{run} — {len(rows)} of {total} reasonings, coloured by {COLOURS[colour]}"},
                   "xaxis": {"title": {"text": "PC 1"}}, "yaxis": {"title": {"text": "PC 2"}},
                   "legend": {"title": {"text": COLOURS[colour]}}, "height": 560},
    })


@researcher_required
@require_POST
def discovery_category(request: HttpRequest, pk: int, label: int) -> HttpResponse:
    """A cluster becomes a category in a new version of a taxonomy."""
    cluster = get_object_or_404(Cluster, run_id=pk, label=label)
    base = get_object_or_404(Taxonomy, pk=request.POST.get("taxonomy") or 0)
    taxonomy = findings.category_from_cluster(cluster, base, name=request.POST.get("name", "")[:100])
    messages.success(request, f"{taxonomy} created with a category for {cluster}.")
    return redirect("discovery-run", pk=pk)


@researcher_required
def discovery_search(request: HttpRequest) -> HttpResponse:
    """More like this, by a free-text description: the transcript list with the `like_text` filter."""
    text = request.GET.get("text", "").strip()[:4000]
    return redirect(f"{reverse('transcript-list')}?{urlencode({'like_text': text, 'like_n': 50})}")
