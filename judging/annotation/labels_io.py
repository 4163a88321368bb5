"""Labels as CSV: export a queue's labels, import labels made elsewhere (e.g. another annotation tool)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, QuerySet

from transcripts.access import AUDITOR, with_role
from transcripts.importing import MAX_PROBLEMS, ImportFailed
from transcripts.spreadsheet_safety import neutralise, restore

from ..models import AnnotationQueue, Assignment, Highlight, Label, LabelRevision, PersonaCategory, QueueItem
from . import label_history
from .consensus import refresh_consensus

COLUMNS = [
    "queue", "transcript_id", "annotator", "label", "categories", "misaligned", "alignment_score", "note",
    "confidence", "seconds_spent", "highlights", "created_at",
]
# How the misaligned flag is written, and the spellings read back.
FLAG_TEXT = {True: "true", False: "false"}
FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
EXPORT_CHUNK = 2000  # labels read (and CSV rows written) at a time


def export_rows(queue: AnnotationQueue) -> Iterator[list]:
    """The header, then one row per label. `label` is the primary category; `categories` all of them;
    `misaligned` is true/false and `alignment_score` 0–100, empty where the queue did not ask.
    Text cells a spreadsheet would run as formulas are neutralised (transcripts.spreadsheet_safety.neutralise)."""
    yield COLUMNS
    for (queue_name, transcript_id, auditor, primary, categories, misaligned, score, note, confidence, seconds,
         highlights, created) in label_values(queue):
        yield [neutralise(cell) for cell in (
            queue_name, transcript_id, auditor, primary or "", ";".join(categories), FLAG_TEXT.get(misaligned, ""),
            "" if score is None else score, note, "" if confidence is None else confidence, round(seconds, 1),
            json.dumps(highlights), created.isoformat(),
        )]


def label_values(queue: AnnotationQueue) -> Iterator[tuple]:
    """One tuple per label in COLUMNS' order, as values (None where the queue did not ask; categories a sorted
    list of keys; highlights a list of {category, start, end}; created_at a datetime): what the CSV writes as
    text and the Parquet export (labels_parquet) types.

    Three streamed queries of plain values, all in item order, read side by side: the labels, their categories
    and their highlights. Model rows with prefetched relations cloned a queryset per label and relation (42,000
    labels took ~20 s), and per-chunk `IN (ids)` lookups cost more than the rows they read."""
    labels = Label.objects.filter(item__queue=queue).order_by("item__position", "auditor__username").values_list(
        "pk", "item__position", "item__transcript_id", "auditor__username", "primary__key", "misaligned",
        "alignment_score", "note", "confidence", "seconds_spent", "created_at",
    )
    categories = _ByItem(Label.categories.through.objects.filter(label__item__queue=queue)
                         .order_by("label__item__position").values_list("label__item__position", "label_id",
                                                                        "personacategory__key"))
    highlights = _ByItem(Highlight.objects.filter(label__item__queue=queue)
                         .order_by("label__item__position", "label_id", "start", "pk")
                         .values_list("label__item__position", "label_id", "category__key", "start", "end"))
    for (pk, position, transcript_id, auditor, primary, misaligned, score, note, confidence, seconds,
         created) in labels.iterator(chunk_size=EXPORT_CHUNK):
        yield (
            queue.name, transcript_id, auditor, primary, sorted(key for (key,) in categories.of(position, pk)),
            misaligned, score, note, confidence, seconds,
            [{"category": key, "start": start, "end": end} for key, start, end in highlights.of(position, pk)],
            created,
        )


class _ByItem:
    """Rows (item position, label id, *values) streamed in item position order; of(position, label) gives that
    label's values. The rows of one position are read together when the labels reach it, so only one item's
    rows are held, and a row whose label the label stream lacks (written between the queries) is skipped,
    never waited for."""

    def __init__(self, rows: QuerySet):
        self._rows = rows.iterator(chunk_size=EXPORT_CHUNK)
        self._head = next(self._rows, None)
        self._position: int | None = None
        self._values: dict[int, list[tuple]] = {}

    def of(self, position: int, label_id: int) -> list[tuple]:
        if position != self._position:
            self._position, self._values = position, {}
            while self._head is not None and self._head[0] <= position:
                if self._head[0] == position:
                    self._values.setdefault(self._head[1], []).append(self._head[2:])
                self._head = next(self._rows, None)
        return self._values.get(label_id, [])


def export_csv(queue: AnnotationQueue) -> Iterator[str]:
    """export_rows as CSV text, EXPORT_CHUNK rows per piece (a response written row by row makes a write per
    row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = export_rows(queue)
    while chunk := list(islice(rows, EXPORT_CHUNK)):
        writer.writerows(chunk)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# The annotation form's confidence scale (Label.confidence: 1 guess … 5 certain).
CONFIDENCE = range(1, 6)


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
    primary: PersonaCategory | None
    categories: list[PersonaCategory]
    misaligned: bool | None
    alignment_score: int | None
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


def _flag(text: str) -> bool | None:
    if not text:
        return None
    if text.lower() not in FLAG_VALUES:
        raise _Refused("misaligned", f"expected true or false (or nothing), got {text[:20]!r}")
    return FLAG_VALUES[text.lower()]


def _alignment_score(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > 100:
        raise _Refused("alignment_score", f"expected a whole number from 0 to 100 or nothing, got {text[:20]!r}")
    return int(text)


def _required(queue: AnnotationQueue) -> dict[str, str]:
    """The columns a row must fill for this queue, with what they answer."""
    asked = {"label": "a persona category", "misaligned": "the misaligned flag", "alignment_score": "a score"}
    wanted = {"label": queue.asks_persona, "misaligned": queue.asks_verdict,
              "alignment_score": queue.ask_alignment_score}
    return {column: asked[column] for column, needed in wanted.items() if needed}


def _seconds(text: str) -> float:
    try:
        seconds = float(text or 0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise _Refused("seconds_spent", f"expected a number of seconds ≥ 0, got {text[:20]!r}")
    return seconds


def _not_an_annotator(queue: AnnotationQueue, username: str) -> str:
    name = repr(username[:40])
    if not User.objects.filter(username=username).exists():
        return f"no user named {name}"
    return (f"{name} is not an auditor of queue {queue.name}: labels are imported only for its members with the "
            f"auditor role")


def _read_rows(queue: AnnotationQueue, reader: csv.DictReader, errors: list[str], file: str) -> list[_Row]:
    """Every row validated; problems go to `errors` (at most MAX_PROBLEMS, the limit of every import) as
    `file, line n, field "f": why`."""
    categories = {c.key: c for c in queue.taxonomy.categories.all()}
    items = {str(tid): pk for pk, tid in queue.items.values_list("pk", "transcript_id")}
    # Only those who could have labelled the item in the workspace: the queue's members with the auditor role.
    annotators = {u.username: u for u in with_role(queue.auditors.all(), AUDITOR)}
    rows: list[_Row] = []
    first_line: dict[tuple[int, int], int] = {}
    start = reader.line_num + 1
    for raw in reader:
        # An exported cell comes back as it was before the export neutralised it ('=… → =…).
        cell = {name: restore(value or "").strip() for name, value in raw.items() if isinstance(name, str)}
        try:
            if cell["transcript_id"] not in items:
                raise _Refused("transcript_id", f"no transcript {cell['transcript_id'][:20]!r} in queue {queue.name}")
            for column, answer in _required(queue).items():
                if not cell.get(column):
                    raise _Refused(column, f"missing: queue {queue.name} asks for {answer}")
            if cell["annotator"] not in annotators:
                raise _Refused("annotator", _not_an_annotator(queue, cell["annotator"]))
            if not queue.asks_persona and (cell.get("label") or cell.get("categories")):
                raise _Refused("label", f"queue {queue.name} does not ask for a persona category")
            label = cell.get("label", "")
            keys = [k.strip() for k in (cell.get("categories") or label).split(";") if k.strip()]
            for name, key in ([("label", label)] if label else []) + [("categories", k) for k in keys]:
                if key not in categories:
                    raise _Refused(name, f"{key[:40]!r} is not a category of {queue.taxonomy}")
            row = _Row(
                line=start, item_id=items[cell["transcript_id"]], auditor=annotators[cell["annotator"]],
                primary=categories[label] if label else None, categories=[categories[k] for k in keys],
                misaligned=_flag(cell.get("misaligned", "")),
                alignment_score=_alignment_score(cell.get("alignment_score", "")),
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
            if len(errors) >= MAX_PROBLEMS:
                errors.append("… and possibly more; stopped reading here.")
                return rows
        start = reader.line_num + 1
    return rows


def import_labels(*, queue: AnnotationQueue, lines: Iterable[str], by: User | None,
                  file: str = "labels.csv") -> ImportResult:
    """Create or replace labels from CSV rows with transcript_id, annotator and what the queue asks: label
    (persona queues), misaligned (verdict queues), alignment_score (if asked). Other columns are optional.

    All or nothing: every row is checked first (transcript in the queue, annotator a member of the queue with
    the auditor role, categories of the queue's taxonomy, flag true/false, score 0–100, confidence on the form's
    scale, seconds ≥ 0); any problem is reported by file, line and field, and nothing is saved. Otherwise one
    transaction saves every row. Imported labels count towards overlap. Replacing a label is a feature (fix the
    file, import it again) and is recorded in the label's history in the name of `by` (None: no user, e.g. a shell).
    """
    result = ImportResult()
    reader = csv.DictReader(lines)
    try:
        missing = {"transcript_id", "annotator", *_required(queue)} - set(reader.fieldnames or [])
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
            created = _save(row, by=by)
            result.created += created
            result.updated += not created
    return result


def _save(row: _Row, *, by: User | None) -> bool:
    item = QueueItem.objects.select_for_update().get(pk=row.item_id)
    existing = Label.objects.filter(item=item, auditor=row.auditor).select_related("primary").first()
    before = label_history.snapshot(existing) if existing else None
    label, created = Label.objects.update_or_create(
        item=item, auditor=row.auditor,
        defaults={"primary": row.primary, "misaligned": row.misaligned, "alignment_score": row.alignment_score,
                  "note": row.note, "confidence": row.confidence, "seconds_spent": row.seconds_spent},
    )
    label.categories.set(row.categories)
    if before is not None:
        label_history.record(label=label, before=before, after=label_history.snapshot(label), changed_by=by,
                             source=LabelRevision.Source.IMPORT)
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
