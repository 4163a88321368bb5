"""Labels as CSV: export a queue's labels, import labels made elsewhere (e.g. another annotation tool)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from transcripts.exporting import neutralise, restore
from transcripts.importing import ImportFailed

from .consensus import refresh_consensus
from .models import AnnotationQueue, Assignment, Label, PersonaCategory, QueueItem

COLUMNS = [
    "queue", "transcript_id", "annotator", "label", "categories", "note", "confidence", "seconds_spent",
    "highlights", "created_at",
]


def export_rows(queue: AnnotationQueue) -> Iterator[list]:
    """The header, then one row per label. `label` is the primary category; `categories` all of them.
    Text cells a spreadsheet would run as formulas are neutralised (transcripts.exporting.neutralise)."""
    yield COLUMNS
    labels = (
        Label.objects.filter(item__queue=queue)
        .select_related("item", "auditor", "primary")
        .prefetch_related("categories", "highlights__category")
        .order_by("item__position", "auditor__username")
    )
    for label in labels.iterator(chunk_size=500):
        yield [neutralise(cell) for cell in (
            queue.name, label.item.transcript_id, label.auditor.username, label.primary.key if label.primary else "",
            ";".join(sorted(c.key for c in label.categories.all())), label.note,
            "" if label.confidence is None else label.confidence, round(label.seconds_spent, 1),
            json.dumps([{"category": h.category.key, "start": h.start, "end": h.end} for h in label.highlights.all()]),
            label.created_at.isoformat(),
        )]


# The annotation form's confidence scale (Label.confidence: 1 guess … 5 certain).
CONFIDENCE = range(1, 6)
# Enough to fix a file by; a file with thousands of bad rows is usually the wrong file.
MAX_ERRORS = 20


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Row:
    line: int
    item_id: int
    auditor: User
    primary: PersonaCategory
    categories: list[PersonaCategory]
    note: str
    confidence: int | None
    seconds_spent: float


class _Refused(Exception):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


def _confidence(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) not in CONFIDENCE:
        raise _Refused("confidence", f"expected a whole number from {CONFIDENCE[0]} to {CONFIDENCE[-1]} or nothing, "
                                     f"got {text[:20]!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text or 0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise _Refused("seconds_spent", f"expected a number of seconds ≥ 0, got {text[:20]!r}")
    return seconds


def _read_rows(queue: AnnotationQueue, reader: csv.DictReader, errors: list[str], file: str) -> list[_Row]:
    """Every row validated; problems go to `errors` (at most MAX_ERRORS) as `file, line n, field "f": why`."""
    categories = {c.key: c for c in queue.taxonomy.categories.all()}
    items = {str(tid): pk for pk, tid in queue.items.values_list("pk", "transcript_id")}
    users = {u.username: u for u in User.objects.all()}
    rows: list[_Row] = []
    first_line: dict[tuple[int, int], int] = {}
    start = reader.line_num + 1
    for raw in reader:
        # An exported cell comes back as it was before the export neutralised it ('=… → =…).
        cell = {name: restore(value or "").strip() for name, value in raw.items() if isinstance(name, str)}
        try:
            if cell["transcript_id"] not in items:
                raise _Refused("transcript_id", f"no transcript {cell['transcript_id'][:20]!r} in queue {queue.name}")
            if not cell["label"]:
                raise _Refused("label", "missing")
            if cell["annotator"] not in users:
                raise _Refused("annotator", f"no user named {cell['annotator'][:40]!r}")
            keys = [k.strip() for k in (cell.get("categories") or cell["label"]).split(";") if k.strip()]
            for name, key in [("label", cell["label"])] + [("categories", k) for k in keys]:
                if key not in categories:
                    raise _Refused(name, f"{key[:40]!r} is not a category of {queue.taxonomy}")
            row = _Row(
                line=start, item_id=items[cell["transcript_id"]], auditor=users[cell["annotator"]],
                primary=categories[cell["label"]], categories=[categories[k] for k in keys],
                note=restore(raw.get("note") or ""), confidence=_confidence(cell.get("confidence", "")),
                seconds_spent=_seconds(cell.get("seconds_spent", "")),
            )
            pair = (row.item_id, row.auditor.pk)
            if pair in first_line:
                raise _Refused("annotator", f"this transcript and annotator are on line {first_line[pair]} already")
            first_line[pair] = start
            rows.append(row)
        except _Refused as refused:
            errors.append(str(ImportFailed(file, refused.message, line=start, field=refused.field)))
            if len(errors) >= MAX_ERRORS:
                errors.append("… and possibly more; stopped reading here.")
                return rows
        start = reader.line_num + 1
    return rows


def import_labels(*, queue: AnnotationQueue, lines: Iterable[str], file: str = "labels.csv") -> ImportResult:
    """Create or replace labels from CSV rows with transcript_id, annotator and label (other columns optional).

    All or nothing: every row is checked first (transcript in the queue, known annotator, categories of the
    queue's taxonomy, confidence on the form's scale, seconds ≥ 0); any problem is reported by file, line and
    field, and nothing is saved. Otherwise one transaction saves every row. Imported labels count towards overlap.
    """
    result = ImportResult()
    reader = csv.DictReader(lines)
    try:
        missing = {"transcript_id", "annotator", "label"} - set(reader.fieldnames or [])
        if missing:
            result.errors.append(str(ImportFailed(file, f"missing column(s): {', '.join(sorted(missing))}", line=1)))
            return result
        rows = _read_rows(queue, reader, result.errors, file)
    except csv.Error as exc:
        result.errors.append(str(ImportFailed(file, f"malformed CSV: {exc}", line=reader.line_num)))
    except UnicodeDecodeError:
        result.errors.append(str(ImportFailed(file, "not valid UTF-8; save the file as UTF-8")))
    if result.errors:
        return result
    with transaction.atomic():
        for row in rows:
            created = _save(row)
            result.created += created
            result.updated += not created
    return result


def _save(row: _Row) -> bool:
    item = QueueItem.objects.select_for_update().get(pk=row.item_id)
    label, created = Label.objects.update_or_create(
        item=item, auditor=row.auditor,
        defaults={"primary": row.primary, "note": row.note, "confidence": row.confidence,
                  "seconds_spent": row.seconds_spent},
    )
    label.categories.set(row.categories or [row.primary])
    Assignment.objects.update_or_create(
        item=item, auditor=row.auditor,
        defaults={"status": Assignment.Status.SUBMITTED, "expires_at": label.created_at,
                  "finished_at": label.created_at},
    )
    if created:
        QueueItem.objects.filter(pk=item.pk).update(label_count=F("label_count") + 1)
    refresh_consensus(item)
    return created


def read_upload(upload) -> Iterator[str]:
    """Lines of an uploaded file as text (UTF-8, with or without BOM)."""
    return io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
