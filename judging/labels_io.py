"""Labels as CSV: export a queue's labels, import labels made elsewhere (e.g. another annotation tool)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from transcripts.exporting import neutralise

from .consensus import refresh_consensus
from .models import AnnotationQueue, Assignment, Label, QueueItem

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


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def import_labels(*, queue: AnnotationQueue, lines: Iterable[str]) -> ImportResult:
    """Create or replace labels from CSV rows with transcript_id, annotator and label (other columns optional).

    Rows whose transcript is not in the queue, whose annotator is unknown or whose label is not a category
    of the queue's taxonomy are reported by line and skipped. Imported labels count towards overlap.
    """
    result = ImportResult()
    reader = csv.DictReader(lines)
    missing = {"transcript_id", "annotator", "label"} - set(reader.fieldnames or [])
    if missing:
        result.errors.append(f"Missing column(s): {', '.join(sorted(missing))}.")
        return result
    categories = {c.key: c for c in queue.taxonomy.categories.all()}
    items = {str(tid): pk for pk, tid in queue.items.values_list("pk", "transcript_id")}
    users = {u.username: u for u in User.objects.all()}
    for line, row in enumerate(reader, start=2):
        item_id, user = items.get((row["transcript_id"] or "").strip()), users.get((row["annotator"] or "").strip())
        keys = [k for k in (row.get("categories") or row["label"] or "").split(";") if k.strip()]
        primary = (row["label"] or "").strip()
        if item_id is None or user is None or not primary:
            result.errors.append(f"line {line}: unknown transcript or annotator, or no label")
            continue
        if any(k.strip() not in categories for k in keys + [primary]):
            result.errors.append(f"line {line}: category not in {queue.taxonomy}")
            continue
        confidence = (row.get("confidence") or "").strip()
        with transaction.atomic():
            item = QueueItem.objects.select_for_update().get(pk=item_id)
            label, created = Label.objects.update_or_create(
                item=item, auditor=user,
                defaults={"primary": categories[primary], "note": row.get("note") or "",
                          "confidence": int(confidence) if confidence.isdigit() else None,
                          "seconds_spent": float(row.get("seconds_spent") or 0)},
            )
            label.categories.set([categories[k.strip()] for k in keys] or [categories[primary]])
            Assignment.objects.update_or_create(
                item=item, auditor=user,
                defaults={"status": Assignment.Status.SUBMITTED, "expires_at": label.created_at,
                          "finished_at": label.created_at},
            )
            if created:
                QueueItem.objects.filter(pk=item.pk).update(label_count=F("label_count") + 1)
            refresh_consensus(item)
        result.created += created
        result.updated += not created
    return result


def read_upload(upload) -> Iterator[str]:
    """Lines of an uploaded file as text (UTF-8, with or without BOM)."""
    return io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
