"""Uploads: transcript files imported in the background by a Celery task (judging.tasks.import_upload), with
their progress in a small status file.

The upload is saved under VAR_DIR/imports/<job>/ (EM_VAR_DIR: the web server and the workers must share it),
and the task writes status.json next to it after every chunk for the upload page to poll."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from transcripts.importing import ImportFailed

from .importing import import_transcripts
from .staging import ImportProgress


def upload_dir() -> Path:
    return Path(settings.VAR_DIR) / "imports"


def _status_path(job: uuid.UUID) -> Path:
    return upload_dir() / str(job) / "status.json"


def read_status(job: uuid.UUID) -> dict | None:
    """The job's last status: state (queued, running, done, failed), file, bytes_total, bytes_read, rows,
    writing, and once finished `message` or `refusal` (ImportFailed.report()). None for an unknown job."""
    try:
        return json.loads(_status_path(job).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _write_status(job: uuid.UUID, status: dict) -> None:
    # Written aside and renamed, so that the page never reads half a file.
    path = _status_path(job)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(status), encoding="utf-8")
    os.replace(partial, path)


def write_upload(upload: UploadedFile, directory: Path) -> Path:
    """Save an upload in `directory` under the uploaded file's own name: the format follows its extension,
    and every error message names the file the researcher knows."""
    path = directory / Path(upload.name).name
    with path.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return path


# How long a finished import's status stays readable on its page.
KEEP_JOBS = timedelta(days=7)


def _prune_jobs() -> None:
    cutoff = (timezone.now() - KEEP_JOBS).timestamp()
    for directory in upload_dir().glob("*/"):
        if directory.stat().st_mtime < cutoff:
            shutil.rmtree(directory, ignore_errors=True)


def save_upload(upload: UploadedFile) -> uuid.UUID:
    """Store an uploaded transcripts file for the background import; returns its job id. Jobs older than
    KEEP_JOBS go."""
    _prune_jobs()
    job = uuid.uuid4()
    directory = upload_dir() / str(job)
    directory.mkdir(parents=True)
    path = write_upload(upload, directory)
    _write_status(job, {"state": "queued", "file": path.name, "bytes_total": path.stat().st_size,
                        "bytes_read": 0, "rows": 0, "writing": False})
    return job


def run_upload(job: uuid.UUID) -> None:
    """Import a saved upload, recording progress and then the summary or the error in its status. A job
    that has finished is left alone (a broker may deliver its message twice)."""
    status = read_status(job)
    if status is None or status["state"] in ("done", "failed"):
        return
    path = upload_dir() / str(job) / status["file"]

    def report(state: ImportProgress) -> None:
        status.update(state="running", bytes_read=state.bytes_read, rows=state.rows, writing=state.writing)
        _write_status(job, status)

    try:
        summary = import_transcripts(path, progress=report)
    except ImportFailed as exc:
        status.update(state="failed", refusal=exc.report())
    except Exception:
        stopped = ImportFailed(path.name, "the import stopped on an internal error")
        status.update(state="failed", refusal=stopped.report())
        raise
    else:
        status.update(state="done", message=f"{summary}.", created=summary.created, unmapped=summary.unmapped)
    finally:
        path.unlink(missing_ok=True)
        _write_status(job, status)
