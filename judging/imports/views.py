"""The researchers' upload page. It lives in `judging` because transcript imports carry judge scores
(and `transcripts` must not import `judging`); datasets and questions go to transcripts.importing.

Datasets and questions are small and import while the page waits. Transcript files can hold a million runs:
they are saved and imported by a Celery task (`judging.tasks.import_upload`); the upload page (with htmx; without
JavaScript the import's own page) polls the job's progress until it shows the summary or the bad lines."""

import tempfile
import uuid
from pathlib import Path

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from transcripts.access import researcher_required
from transcripts.forms import ImportForm
from transcripts.importing import ImportFailed, import_dataset, import_questions

from .. import tasks
from . import uploads


def _run_import(data: dict, path: Path) -> tuple[str, str]:
    """(success message, URL to go to) for one validated dataset or questions upload saved at `path`."""
    if data["kind"] == ImportForm.DATASET:
        dataset, created = import_dataset(
            path, name=data["name"], description=data["description"], synthetic=data["synthetic"]
        )
        verb = "Imported" if created else "Already imported:"
        message = f"{verb} dataset {dataset} with {dataset.n_examples} examples."
        return message, reverse("dataset-detail", args=[dataset.pk])
    question_set, changed = import_questions(path, name=data["name"])
    verb = "Imported" if changed else "Already imported:"
    message = f"{verb} question set {question_set.name} with {question_set.questions.count()} questions."
    return message, reverse("question-set-detail", args=[question_set.pk])


@researcher_required
def import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    context: dict = {"form": form}
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if form.cleaned_data["kind"] == ImportForm.TRANSCRIPTS:
            job = uploads.save_upload(upload)
            tasks.import_upload.delay(str(job))
            if not request.htmx:
                return redirect("import-progress", job=job)
            # With htmx the progress card comes into this page's report, so a refused file is still chosen.
            return render(request, "judging/import_form.html", {**context, "job": job,
                                                                 "status": uploads.read_status(job)})
        with tempfile.TemporaryDirectory() as tmp:
            path = uploads.write_upload(upload, Path(tmp))
            try:
                message, target = _run_import(form.cleaned_data, path)
            except ImportFailed as exc:
                context["refusal"] = exc.report()
        if "refusal" not in context:
            messages.success(request, message)
            return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    # The page posts with htmx and swaps in only the report (#import-report), so the chosen file stays chosen
    # for a second try; htmx swaps 2xx answers only. Without JavaScript the form posts as usual and gets a 400.
    status = 400 if request.method == "POST" and not request.htmx else 200
    return render(request, "judging/import_form.html", context, status=status)


@researcher_required
def import_progress(request: HttpRequest, job: uuid.UUID) -> HttpResponse:
    """A background transcripts import: the whole page, or (polled by htmx) only its progress card."""
    status = uploads.read_status(job)
    if status is None:
        raise Http404("No such import.")
    context = {"job": job, "status": status, "file_kept": request.GET.get("file_kept") == "1"}
    if request.htmx:
        return render(request, "judging/import_progress.html", context)
    return render(request, "judging/import_job.html", context)
