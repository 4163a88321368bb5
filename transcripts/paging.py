"""Keyset (cursor) paging of transcripts in the browser's sort orders: the transcript list and its previous/next
links read pages this way, and judging's queue item pages use the same cursors (`rows_after`, `encode_cursor`).

No OFFSET and no COUNT: a page is the rows after a cursor (sort value, id), read through an index on (column, id),
so a deep page costs what the first does.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from django.db.models import F, FloatField, Func, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThan, LessThan

from em_site import bounded

from .models import Transcript

# Sort keys the browser offers: (column, descending). Each has an index on (column, id).
SORTS = {
    "-id": ("id", True),
    "id": ("id", False),
    "aligned": ("aligned", False),
    "-aligned": ("aligned", True),
    "coherent": ("coherent", False),
    "-coherent": ("coherent", True),
}
DEFAULT_SORT = "-id"


def encode_cursor(value, pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, pk]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[object, int] | None:
    """(sort value, id) or None for a missing or malformed cursor (a bad link shows the first page)."""
    if not cursor:
        return None
    try:
        value, pk = bounded.load_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, TypeError):
        return None
    if not isinstance(pk, int) or not (value is None or isinstance(value, int | float)):
        return None
    return value, pk


class _RowValue(Func):
    """(a, b) as one row value: compared with another, rows order by a then b, and PostgreSQL walks an index on
    (a, b) through the comparison. Column references, not SQL text: it stays right inside a subquery."""

    template = "(%(expressions)s)"
    output_field = FloatField()  # never read: the value only appears inside a comparison


def rows_after(queryset: QuerySet, column: str, descending: bool, value, pk: int) -> QuerySet:
    """Rows strictly after (value, pk) in the order (column, id), both descending or both ascending; a row
    comparison, so an index on (column, id) (after any columns the queryset fixes with =) walks the range."""
    if column == "id":
        return queryset.filter(**{f"pk__{'lt' if descending else 'gt'}": pk})
    beyond = LessThan if descending else GreaterThan
    return queryset.filter(beyond(_RowValue(F(column), F("id")), _RowValue(Value(value), Value(pk))))


def _phases_after(queryset: QuerySet, sort: str, cursor: tuple[object, int] | None) -> list[QuerySet]:
    """The rows strictly after `cursor` in `sort` order, as ordered querysets to be read one after the other.

    Score columns can be NULL (not judged yet): those rows come last, ordered by id. Paging runs in two
    phases (scored rows by (score, id), then unscored rows by id) so each phase is one index range scan;
    a single query with `OR score IS NULL` would make PostgreSQL scan from the start on every deep page.
    """
    column, descending = SORTS.get(sort, SORTS[DEFAULT_SORT])
    id_order = "-id" if descending else "id"
    if column == "id":
        rows = queryset.order_by(id_order)
        return [rows_after(rows, "id", descending, None, cursor[1]) if cursor else rows]
    phases = []
    if cursor is None or cursor[0] is not None:
        scored = queryset.filter(**{f"{column}__isnull": False}).order_by(
            f"-{column}" if descending else column, id_order
        )
        phases.append(rows_after(scored, column, descending, *cursor) if cursor else scored)
    unscored = queryset.filter(**{f"{column}__isnull": True}).order_by(id_order)
    phases.append(rows_after(unscored, "id", descending, None, cursor[1]) if cursor and cursor[0] is None
                  else unscored)
    return phases


def _phases_before(queryset: QuerySet, sort: str, here: tuple[object, int]) -> list[QuerySet]:
    """The rows strictly before `here` in `sort` order, nearest first, as ordered querysets read one after the
    other. Nulls-last ordering is not symmetric: before an unscored row come the unscored rows with a smaller
    place by id, then the last scored row; before a scored row, only scored rows."""
    column, descending = SORTS.get(sort, SORTS[DEFAULT_SORT])
    id_back = "id" if descending else "-id"
    if column == "id":
        return [rows_after(queryset.order_by(id_back), "id", not descending, None, here[1])]
    scored = queryset.filter(**{f"{column}__isnull": False}).order_by(column if descending else f"-{column}", id_back)
    if here[0] is None:
        unscored = queryset.filter(**{f"{column}__isnull": True}).order_by(id_back)
        return [rows_after(unscored, "id", not descending, None, here[1]), scored]
    return [rows_after(scored, column, not descending, *here)]


def ordered_after(queryset: QuerySet, sort: str, cursor: tuple[object, int] | None, limit: int) -> list:
    """Up to `limit` rows of `queryset` in `sort` order, strictly after `cursor` (a later phase is read only
    when the earlier ones ran out)."""
    rows: list = []
    for phase in _phases_after(queryset, sort, cursor):
        if len(rows) < limit:
            rows += list(phase[: limit - len(rows)])
    return rows


def cursor_of(row, sort: str) -> str:
    column, _ = SORTS.get(sort, SORTS[DEFAULT_SORT])
    return encode_cursor(getattr(row, column), row.pk)


def reversed_sort(sort: str) -> str:
    sort = sort if sort in SORTS else DEFAULT_SORT
    return sort[1:] if sort.startswith("-") else f"-{sort}"


@dataclass
class Page:
    rows: list
    next_cursor: str | None


def keyset_page(queryset: QuerySet, sort: str, cursor: str, size: int) -> Page:
    """One page and the cursor of the next one (None on the last page). No OFFSET, no COUNT."""
    rows = ordered_after(queryset, sort, decode_cursor(cursor), size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows=rows, next_cursor=cursor_of(rows[-1], sort) if more and rows else None)


def neighbours(queryset: QuerySet, sort: str, transcript: Transcript) -> tuple[int | None, int | None]:
    """Ids of the previous and next transcript in the filtered, sorted list (None at either end), in one query:
    each is the first id of its phases (COALESCE reads a later phase only when the earlier one is empty)."""
    column, _ = SORTS.get(sort, SORTS[DEFAULT_SORT])
    here = (getattr(transcript, column), transcript.pk)

    def first_id(phases: list[QuerySet]):
        ids = [Subquery(phase.values("pk")[:1]) for phase in phases]
        return Coalesce(*ids) if len(ids) > 1 else ids[0]

    return Transcript.objects.filter(pk=transcript.pk).values_list(
        first_id(_phases_before(queryset, sort, here)), first_id(_phases_after(queryset, sort, here))
    ).get()
