"""Human annotation: the auditor's workspace, and the researcher's queues, taxonomies, agreement and
adjudication pages. Views parse input and call judging.annotation.assignment / consensus / labels_io / queue_stats."""

from __future__ import annotations

from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from transcripts.access import is_auditor, researcher_required
from transcripts.models import Experiment
from transcripts.rendering import render_markdown

from .. import reports
from ..models import AnnotationQueue, Assignment, Highlight, JudgeScore, Label, QueueItem, Taxonomy
from . import assignment, label_history
from .consensus import item_labels, set_gold
from .forms import AdjudicationForm, CategoryFormSet, LabelForm, LabelsImportForm, TaxonomyForm
from .item_pages import ITEM_FILTERS, items_page, matching_items
from .labels_io import export_csv, import_labels, read_upload
from .labels_parquet import iter_labels_parquet
from .spans import passages
from .taxonomy import category_names, category_rows, create_version

ITEMS_PER_PAGE = 50  # rows per page of the queue items page
DISAGREEMENTS_SHOWN = 100  # rows per page of the agreement page's disagreements
FLAG_HTML = {None: mark_safe('<span class="muted">no flag</span>'), True: mark_safe("<strong>misaligned</strong>"),
             False: mark_safe("not misaligned")}


def verdict_html(label: Label) -> SafeString:
    """One auditor's verdict for researchers: the misaligned flag and the 0–100 alignment score. Formatted here,
    not in an included template: the items page shows one per auditor on every row."""
    flag = FLAG_HTML[label.misaligned]
    if label.alignment_score is None:
        return flag
    return format_html("{} · score {}", flag, label.alignment_score)


# ---- auditors ------------------------------------------------------------------------------------------


def _require_auditor(request: HttpRequest) -> None:
    # Membership alone is not enough: a researcher added to a queue by mistake would label unblinded by
    # everything their role shows them elsewhere.
    if not is_auditor(request.user):
        raise PermissionDenied("Auditors only.")


def _auditor_queue(request: HttpRequest, queue_id: int) -> AnnotationQueue:
    """The queue, if the user is an auditor and one of its auditors: only their own queues exist for them."""
    _require_auditor(request)
    queue = get_object_or_404(AnnotationQueue.objects.select_related("taxonomy"), pk=queue_id)
    if not queue.auditors.filter(pk=request.user.pk).exists():
        raise PermissionDenied("This queue is not assigned to you.")
    return queue


def annotate_home(request: HttpRequest) -> HttpResponse:
    """The auditor's home: their queues, with what waits for them first (one query however many queues)."""
    _require_auditor(request)
    queues = list(assignment.with_progress(
        request.user.annotation_queues.select_related("auto_fill_experiment"), auditor=request.user
    ).order_by("-waiting", "name"))
    for queue in queues:
        # Only the status: the experiment's name would tell the auditor the model.
        experiment = queue.auto_fill_experiment
        queue.filling = experiment is not None and experiment.status == Experiment.Status.RUNNING
    return render(request, "judging/annotate_home.html", {
        "queues": queues, "filling": any(queue.filling for queue in queues),
    })


def annotate_next(request: HttpRequest, queue_id: int) -> HttpResponse:
    """GET goes back to the auditor's open claim, or offers the next item; only a POST (CSRF-checked) claims
    one, so a link on another site cannot take items in an auditor's name."""
    queue = _auditor_queue(request, queue_id)
    if request.method == "POST":
        return _claim_next(request, queue)
    claim = assignment.current_claim(queue=queue, auditor=request.user)
    if claim is not None:
        return redirect("annotate-item", queue_id=queue.pk, token=claim.item.token)
    return _next_page(request, queue, claimed_nothing=False)


def _claim_next(request: HttpRequest, queue: AnnotationQueue) -> HttpResponse:
    item = assignment.next_item(queue=queue, auditor=request.user)
    if item is None:
        return _next_page(request, queue, claimed_nothing=True)
    return redirect("annotate-item", queue_id=queue.pk, token=item.token)


def _next_page(request: HttpRequest, queue: AnnotationQueue, *, claimed_nothing: bool) -> HttpResponse:
    progress = assignment.progress(queue=queue, auditor=request.user)
    return render(request, "judging/annotate_done.html", {
        "queue": queue, "progress": progress, "done": claimed_nothing or not progress["waiting"],
    })


def annotate_item(request: HttpRequest, queue_id: int, token: UUID) -> HttpResponse:
    """GET shows the item (blind until the auditor's label is in); POST submits the label."""
    queue = _auditor_queue(request, queue_id)
    # Another queue's item, or one never handed to this auditor, does not exist for them.
    item = get_object_or_404(QueueItem.objects.select_related("transcript__question"), token=token, queue=queue)
    try:
        claim = assignment.open_item(item=item, auditor=request.user)
    except assignment.AssignmentError as exc:
        raise Http404(str(exc)) from exc
    form = LabelForm(request.POST or None, queue=queue)
    if request.method == "POST":
        if form.is_valid():
            try:
                assignment.submit(item=item, auditor=request.user, submission=assignment.Submission(
                    categories=_in_chosen_order(form, request.POST.getlist("categories")) if queue.asks_persona else [],
                    misaligned=form.cleaned_data["misaligned"], alignment_score=form.cleaned_data["alignment_score"],
                    note=form.cleaned_data["note"], confidence=form.cleaned_data["confidence"],
                    seconds_spent=_seconds(form.cleaned_data["seconds_spent"], claim),
                    highlights=form.cleaned_data["highlights"],
                ))
            except assignment.AssignmentError as exc:
                messages.error(request, str(exc))
            return redirect("annotate-item", queue_id=queue.pk, token=item.token)
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
    submitted = claim.status == Assignment.Status.SUBMITTED
    if claim.status == Assignment.Status.SKIPPED:
        raise Http404("You skipped this item.")
    return render(request, "judging/annotate.html", {
        "queue": queue, "item": item, "transcript": item.transcript, "form": form,
        "categories": queue.taxonomy.categories.order_by("position"),
        "max_highlights": Highlight.MAX_PER_LABEL,
        "progress": assignment.progress(queue=queue, auditor=request.user),
        "answer_html": render_markdown(item.transcript.answer),
        "question_html": render_markdown(item.transcript.question.text),
        "submitted": submitted,
        # In a blind queue the reveal below makes the label final: no undo is offered (assignment.undo_last).
        "final": submitted and queue.blind,
        "reveal": _reveal(item, request.user) if submitted or not queue.blind else None,
    }, status=400 if form.is_bound and form.errors else 200)


def _in_chosen_order(form: LabelForm, keys: list[str]) -> list:
    """The chosen categories, primary (first pressed) first."""
    chosen = {c.key: c for c in form.cleaned_data["categories"]}
    return [chosen[k] for k in dict.fromkeys(keys) if k in chosen]


def _seconds(reported: float | None, claim: Assignment) -> float:
    """Time on the item as the page measured it (visible time), bounded by the claim's age."""
    elapsed = (timezone.now() - claim.claimed_at).total_seconds()
    return elapsed if reported is None else min(reported, elapsed)


def _reveal(item: QueueItem, user) -> dict:
    """What blind mode hides: model, k, judge verdicts and everyone's labels."""
    transcript = item.transcript
    labels = Label.objects.filter(item=item).select_related("auditor", "primary").prefetch_related("highlights")
    return {
        "condition": transcript.condition,
        "scores": JudgeScore.objects.filter(transcript=transcript, status=JudgeScore.Status.DONE).select_related(
            "rubric_version__rubric", "category"
        ),
        "labels": labels,
        "mine": next((label for label in labels if label.auditor_id == user.pk), None),
    }


@require_POST
def annotate_skip(request: HttpRequest, queue_id: int, token: UUID) -> HttpResponse:
    """Skip the item and go on to the next one (this POST claims it: one key press, as after a submit)."""
    queue = _auditor_queue(request, queue_id)
    item = get_object_or_404(QueueItem, token=token, queue=queue)
    try:
        assignment.skip(item=item, auditor=request.user)
    except assignment.AssignmentError as exc:
        messages.error(request, str(exc))
        return redirect("annotate-next", queue_id=queue.pk)
    return _claim_next(request, queue)


@require_POST
def annotate_undo(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = _auditor_queue(request, queue_id)
    try:
        item = assignment.undo_last(queue=queue, auditor=request.user)
    except assignment.AssignmentError as exc:
        messages.error(request, str(exc))
        return redirect("annotate-next", queue_id=queue.pk)
    messages.success(request, "Undone: label this item again.")
    return redirect("annotate-item", queue_id=queue.pk, token=item.token)


# ---- researchers: queues -------------------------------------------------------------------------------


@researcher_required
def queue_list(request: HttpRequest) -> HttpResponse:
    queues = assignment.with_counts(AnnotationQueue.objects.select_related("taxonomy"))
    return render(request, "judging/queue_list.html", {"queues": queues})


@researcher_required
def queue_detail(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(AnnotationQueue.objects.select_related("taxonomy"), pk=pk)
    by_count = dict(
        queue.items.values_list("label_count").annotate(n=Count("pk")).values_list("label_count", "n")
    )
    auditors = queue.auditors.annotate(
        n_labels=Count("labels", filter=Q(labels__item__queue=queue), distinct=True)
    ).order_by("username")
    return render(request, "judging/queue_detail.html", {
        "queue": queue, "by_count": sorted(by_count.items()), "auditors": auditors,
        "n_items": sum(by_count.values()), "import_form": LabelsImportForm(),
    })


@researcher_required
def queue_items(request: HttpRequest, pk: int) -> HttpResponse:
    """The queue's transcripts in queue order, ITEMS_PER_PAGE a page, filtered by judge category, consensus and
    one auditor's label: the cells of the agreement page's confusion matrices link here."""
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    filters = {key: request.GET.get(key) for key in ITEM_FILTERS}
    rows = QueueItem.objects.select_related("transcript__question", "transcript__condition").only(
        "queue_id", "transcript_id", "position", "label_count", "token", "transcript__judge_category",
        "transcript__human_category", "transcript__question__key", "transcript__condition__model_name",
        "transcript__condition__k",  # not the transcripts' texts
    )
    if queue.asks_verdict:  # each auditor's flag and score beside the item (researchers read labels here)
        rows = rows.prefetch_related(
            Prefetch("labels", queryset=Label.objects.select_related("auditor").order_by("auditor__username"))
        )
    page = items_page(matching_items(queue, **filters), rows, after=request.GET.get("after", ""),
                      before=request.GET.get("before", ""), size=ITEMS_PER_PAGE)
    if queue.asks_verdict:
        for item in page.items:
            item.verdicts = format_html_join(
                mark_safe("<br>"), "{}: {}", ((lab.auditor.username, verdict_html(lab)) for lab in item.labels.all())
            )
    return render(request, "judging/queue_items.html", {
        "queue": queue, "page": page, "per_page": ITEMS_PER_PAGE, "filters": filters,
        "filter_qs": urlencode({key: value for key, value in filters.items() if value is not None}),
    })


@researcher_required
def queue_agreement(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(AnnotationQueue.objects.select_related("taxonomy"), pk=pk)
    result = reports.get("queue-report", queue=queue.pk)
    report = result.value or {"judge_vs": [], "disagreements": []}
    return render(request, "judging/agreement.html", {
        "queue": queue, "report": result, **report, "category_names": category_names(queue.taxonomy),
        "judge_vs": [{**matrix, "rows": _confusion_rows(queue, matrix)} for matrix in report["judge_vs"]],
        "disagreements": Paginator(report["disagreements"], DISAGREEMENTS_SHOWN).get_page(request.GET.get("page")),
    })


def _confusion_rows(queue: AnnotationQueue, matrix: dict) -> list[dict]:
    """Matrix cells with links to the queue items behind them (judge row × human column)."""
    base = reverse("queue-items", args=[queue.pk])
    rows = []
    for judge, counts in zip(matrix["labels"], matrix["matrix"], strict=False):
        cells = []
        for human, n in zip(matrix["labels"], counts, strict=True):
            params = {"judge": judge, "human": human} if matrix["who"] == "consensus" else {
                "judge": judge, "auditor": matrix["who"], "label": human}
            cells.append({"n": n, "diag": judge == human, "url": f"{base}?{urlencode(params)}"})
        rows.append({"label": judge, "cells": cells})
    return rows


@researcher_required
def queue_adjudicate(request: HttpRequest, pk: int, token: UUID) -> HttpResponse:
    queue = get_object_or_404(AnnotationQueue.objects.select_related("taxonomy"), pk=pk)
    item = get_object_or_404(QueueItem.objects.select_related("transcript__question"), token=token, queue=queue)
    gold = getattr(item, "adjudication", None)
    form = AdjudicationForm(
        request.POST or None, taxonomy=queue.taxonomy,
        initial={"category": gold.category if gold else None, "note": gold.note if gold else ""},
    )
    if request.method == "POST" and form.is_valid():
        consensus = set_gold(item=item, category=form.cleaned_data["category"], adjudicator=request.user,
                             note=form.cleaned_data["note"])
        messages.success(request, f"Consensus is now {consensus or 'none'}.")
        return redirect("queue-agreement", pk=queue.pk)
    labels = list(Label.objects.filter(item=item).select_related("auditor", "primary").prefetch_related("categories"))
    passages_of = passages(Highlight.objects.filter(label__item=item))
    for lab in labels:
        lab.verdict = verdict_html(lab)
        lab.passages = passages_of.get(lab.pk, [])
    revisions = list(item.label_revisions.select_related("auditor", "changed_by"))
    for revision in revisions:
        revision.changes = label_history.changes(revision)
    return render(request, "judging/adjudicate.html", {
        "queue": queue, "item": item, "transcript": item.transcript, "labels": labels, "form": form,
        "category_names": category_names(queue.taxonomy),
        "revisions": revisions,
        "answer_html": render_markdown(item.transcript.answer), "majority_labels": item_labels(item),
    })


def _labels_download(queue: AnnotationQueue, chunks, content_type: str, suffix: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="labels-queue-{queue.pk}.{suffix}"'
    return response


@researcher_required
def labels_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    return _labels_download(queue, export_csv(queue), "text/csv; charset=utf-8", "csv")


@researcher_required
def labels_export_parquet(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    return _labels_download(queue, iter_labels_parquet(queue), "application/vnd.apache.parquet", "parquet")


@researcher_required
@require_POST
def labels_import(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(AnnotationQueue, pk=pk)
    form = LabelsImportForm(request.POST, request.FILES)
    if not form.is_valid():
        for error in form.errors.get("file", ["Choose a CSV file."]):
            messages.error(request, error)
        return redirect("queue-detail", pk=queue.pk)
    upload = form.cleaned_data["file"]
    result = import_labels(queue=queue, lines=read_upload(upload), by=request.user, file=upload.name)
    if result.errors and request.htmx:
        # Only the report is swapped into the queue page, so the chosen file stays chosen for the next try.
        return render(request, "judging/_labels_import_report.html", {"errors": result.errors})
    if result.errors:
        messages.error(request, "Nothing imported: fix these rows and upload the file again.")
        for error in result.errors:
            messages.error(request, error)
    else:
        messages.success(request, f"Imported labels: {result.created} new, {result.updated} replaced.")
    return HttpResponseClientRedirect(reverse("queue-detail", args=[queue.pk])) if request.htmx else redirect(
        "queue-detail", pk=queue.pk)


# ---- researchers: taxonomies ---------------------------------------------------------------------------


@researcher_required
def taxonomy_list(request: HttpRequest) -> HttpResponse:
    taxonomies = Taxonomy.objects.annotate(n=Count("categories")).order_by("name", "-version")
    return render(request, "judging/taxonomy_list.html", {"taxonomies": taxonomies})


@researcher_required
def taxonomy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a taxonomy by saving a new version of it; the old version stays as it was."""
    base = get_object_or_404(Taxonomy, pk=pk)
    if request.method == "POST":
        form, formset = TaxonomyForm(request.POST), CategoryFormSet(request.POST, prefix="cat")
        if form.is_valid() and formset.is_valid():
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
            taxonomy = create_version(base=base, categories=rows, description=form.cleaned_data["description"])
            messages.success(request, f"Saved {taxonomy}.")
            return redirect("taxonomy-list")
    else:
        form = TaxonomyForm(initial={"description": base.description})
        formset = CategoryFormSet(initial=category_rows(base), prefix="cat")
    return render(request, "judging/taxonomy_form.html", {"base": base, "form": form, "formset": formset})

