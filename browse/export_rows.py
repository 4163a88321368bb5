"""The rows of a transcript export, one per transcript: its columns (COLUMNS, the single definition), every
auditor's label (`auditor:category;…`) and every human judgement whole, as SQL the server computes; the same rows
with their text neutralised in SQL for COPY (transcripts.spreadsheet_safety); and reading them in keyset chunks by
id (`id > last … LIMIT n`), so memory stays constant and no cursor or transaction is held open across an export.
The formats that write these rows are browse.exporting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.contrib.postgres.aggregates import JSONBAgg
from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    CharField,
    Expression,
    F,
    Func,
    JSONField,
    OuterRef,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.functions import Coalesce, Concat, JSONObject

from judging.models import Highlight, Label, LabelRevision
from transcripts.spreadsheet_safety import Neutralised

CHUNK_ROWS = 20_000

# (header, ORM path) — the single definition of the export's columns.
COLUMNS = [
    ("id", "id"),
    ("experiment", "experiment__name"),
    ("model", "condition__model_name"),
    ("endpoint", "condition__endpoint_name"),
    ("endpoint_version", "condition__endpoint__version"),
    ("served_model", "served_model"),
    ("system_fingerprint", "system_fingerprint"),
    ("dataset", "condition__dataset_name"),
    ("k", "condition__k"),
    ("cot_mode", "condition__cot_mode"),
    ("system_prompt", "condition__system_prompt_name"),
    ("temperature", "condition__temperature"),
    ("question", "question__key"),
    ("domain", "question__domain"),
    ("sample_index", "sample_index"),
    ("seed", "seed"),
    ("status", "status"),
    ("aligned", "aligned"),
    ("coherent", "coherent"),
    ("judge_outcome", "judge_outcome"),
    ("misaligned", "misaligned"),
    ("judge_category", "judge_category"),
    ("human_labels", "human_labels"),
    ("human_consensus", "human_category"),
    ("human_judgements", "human_judgements"),
    ("reasoning", "reasoning"),
    ("answer", "answer"),
]
HEADERS = [header for header, _ in COLUMNS]
JUDGEMENTS_AT = HEADERS.index("human_judgements")


class _JoinLabels(Aggregate):
    """`auditor:category` pairs joined with ';' (STRING_AGG on PostgreSQL, GROUP_CONCAT on SQLite)."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ';')"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="GROUP_CONCAT", **extra)


def _human_labels(*, neutralised: bool = False) -> Subquery:
    joined = _JoinLabels(Concat(F("auditor__username"), Value(":"), F("primary__key"), output_field=CharField()))
    pairs = (
        Label.objects.filter(item__transcript=OuterRef("pk"))
        .order_by()
        .values("item__transcript")
        # Neutralised inside the subquery, where PostgreSQL computes the repeated aggregate once; around
        # it, the subquery would run three times per row.
        .annotate(joined=Neutralised(joined) if neutralised else joined)
        .values("joined")
    )
    return Subquery(pairs, output_field=CharField())


class _SQLiteJSON(Func):
    """A value inside a JSON object as PostgreSQL's JSONB has it, on SQLite: booleans true/false (not 1/0),
    datetimes in ISO 8601 with their UTC offset (Django stores them as 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC),
    JSON columns nested (not quoted as text)."""

    TEMPLATES = {
        "BooleanField": "json(CASE %(expressions)s WHEN 1 THEN 'true' WHEN 0 THEN 'false' END)",
        "DateTimeField": "replace(%(expressions)s, ' ', 'T') || '+00:00'",
        "JSONField": "json(%(expressions)s)",
    }

    @classmethod
    def wrapping(cls, expression):
        template = cls.TEMPLATES.get(expression.output_field.get_internal_type())
        return cls(expression, template=template, output_field=expression.output_field) if template else expression


class _JSONObject(JSONObject):
    """JSONObject whose values have the same JSON types on SQLite as on PostgreSQL (_SQLiteJSON)."""

    def as_sqlite(self, compiler, connection, **extra_context):
        typed = self.copy()
        typed.set_source_expressions([
            expression if index % 2 == 0 else _SQLiteJSON.wrapping(expression)
            for index, expression in enumerate(self.get_source_expressions())
        ])
        return super(_JSONObject, typed).as_sql(compiler, connection, **extra_context)


class _JSONList(Expression):
    """The rows of `rows` (restricted to one outer row by `group`) as one JSON array of `element` (a JSONObject, or
    a plain value), in `order_by` order; [] for none. PostgreSQL aggregates with JSONB_AGG(… ORDER BY …). SQLite
    before 3.44 (Debian 12 has 3.40: the embedded default) takes no ORDER BY inside an aggregate, so there
    json_group_array reads an ordered subquery, whose order SQLite's aggregate keeps. An enclosing _JSONObject
    nests the array (_SQLiteJSON), and the elements are marked as JSON again here: a subquery drops that mark."""

    output_field = JSONField()

    def __init__(self, rows: QuerySet, group: str, order_by: tuple[str, ...], element) -> None:
        super().__init__()
        aggregated = rows.order_by().values(group).annotate(joined=JSONBAgg(element, order_by=order_by))
        self.postgresql = Coalesce(Subquery(aggregated.values("joined")), Value([], JSONField()))
        self.ordered = Subquery(rows.order_by(*order_by).annotate(json_element=element).values("json_element"))
        self.elements_are_json = isinstance(element, JSONObject)

    def get_source_expressions(self) -> list:
        return [self.postgresql, self.ordered]

    def set_source_expressions(self, expressions) -> None:
        self.postgresql, self.ordered = expressions

    def as_sql(self, compiler, connection):
        return compiler.compile(self.postgresql)

    def as_sqlite(self, compiler, connection):
        ordered, params = compiler.compile(self.ordered)
        element = "json(e.json_element)" if self.elements_are_json else "e.json_element"
        return f"(SELECT json_group_array({element}) FROM {ordered} AS e)", params  # noqa: S608 — compiled by Django


def human_judgements() -> _JSONList:
    """Every auditor's label of the transcript, whole, as a JSON array: one object per label with its queue,
    auditor, misaligned flag, alignment score, primary category, categories, highlights (category, start, end:
    character offsets into the reasoning), note, confidence, seconds spent, when it was made and last changed, and
    its changes (judging.annotation.label_history: who, when, how, and the label before and after).
    docs/exporting.md documents the scheme; the Parquet export types it (exporting.parquet_schema)."""
    categories = _JSONList(
        Label.categories.through.objects.filter(label=OuterRef("pk")), "label", ("personacategory__key",),
        F("personacategory__key"),
    )
    highlights = _JSONList(
        Highlight.objects.filter(label=OuterRef("pk")), "label", ("start", "end", "pk"),
        _JSONObject(category="category__key", start="start", end="end"),
    )
    changes = _JSONList(
        LabelRevision.objects.filter(item=OuterRef("item"), auditor=OuterRef("auditor")), "item", ("changed_at", "pk"),
        _JSONObject(changed_at="changed_at", changed_by="changed_by__username", source="source", before="before",
                   after="after"),
    )
    return _JSONList(
        Label.objects.filter(item__transcript=OuterRef("pk")), "item__transcript",
        ("item__queue__name", "auditor__username"),
        _JSONObject(queue="item__queue__name", auditor="auditor__username", misaligned="misaligned",
                   alignment_score="alignment_score", primary="primary__key", categories=categories,
                   highlights=highlights, note="note", confidence="confidence", seconds_spent="seconds_spent",
                   created_at="created_at", updated_at="updated_at", changes=changes),
    )


def _annotated(queryset: QuerySet, *, neutralised: bool = False) -> QuerySet:
    return queryset.annotate(human_labels=_human_labels(neutralised=neutralised), human_judgements=human_judgements())


def export_rows(queryset: QuerySet) -> QuerySet:
    """The export's values_list, ordered by id (the keyset)."""
    return _annotated(queryset).order_by("id").values_list(*(p for _, p in COLUMNS))


def neutralised_rows(queryset: QuerySet) -> QuerySet:
    """`export_rows` with every text column neutralised in SQL (what COPY writes). The human judgements are one
    JSON array per cell, which starts with `[` (no formula), its texts quoted inside it."""
    annotated = _annotated(queryset, neutralised=True)
    probe = annotated.query.chain()  # resolving a path adds its joins; look on a copy

    def column(path: str):
        is_text = isinstance(probe.resolve_ref(path).output_field, CharField | TextField)
        return Neutralised(F(path)) if is_text and path not in annotated.query.annotations else path

    return annotated.order_by("id").values_list(*(column(p) for _, p in COLUMNS))


@contextlib.contextmanager
def without_jit() -> Iterator[None]:
    """A transaction for reading one chunk, without PostgreSQL's JIT: the server compiles a query whose estimated
    cost passes jit_above_cost, and the label subquery puts a 20,000-row chunk far past it; at 10M rows each
    chunk spent 56 ms of its ~230 compiling (168 s → 94 s for the whole CSV export)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


def keyset_chunks(rows: QuerySet, size: int | None = None) -> Iterator[list]:
    """The rows (a queryset ordered by id, of tuples whose first value is the id, or of objects) in chunks of
    `size` (CHUNK_ROWS), each read by `id > last … LIMIT size` in a transaction of its own."""
    size = size or CHUNK_ROWS
    last = 0
    while True:
        with without_jit():
            chunk = list(rows.filter(id__gt=last)[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0] if isinstance(chunk[-1], tuple) else chunk[-1].pk


def export_chunks(queryset: QuerySet) -> Iterator[list[tuple]]:
    """The export's rows in keyset chunks."""
    return keyset_chunks(export_rows(queryset))


