"""The transcript filter, defined once for the browser, the charts, the exports and the API, and the keyset
(cursor) paging the browser and the exports use.

Everything here reads the verdict cache on Transcript (aligned, coherent, misaligned, judge_category,
human_category) that `judging` keeps in step, so a filter never joins score or label tables. Condition-
and question-level filters are resolved to id lists first: those tables are small, and `condition_id IN
(…)` lets PostgreSQL walk the primary key (or a covering index) instead of joining a million rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import django_filters
from django import forms
from django.apps import apps
from django.db import connection
from django.db.models import BooleanField, Exists, F, FloatField, Func, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThan, LessThan

from em_site import bounded

from .models import Condition, CotMode, Experiment, Question, Transcript

# Must stay identical to the expression of the GIN index in migration 0005_fulltext_index.
FULLTEXT_SQL = "to_tsvector('english'::regconfig, reasoning || ' ' || answer)"

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

# Filters resolved to one list of condition ids (name → Condition field).
CONDITION_FILTERS = {
    "model": "model_name", "dataset": "dataset_name", "k": "k", "cot": "cot_mode",
    "system_prompt": "system_prompt_name", "temperature": "temperature",
}


# The columns of the small condition and question tables whose distinct values the filter offers as choices; a
# blank dataset or domain means "none" and is not offered.
CHOICE_COLUMNS = {
    Condition: ("model_name", "dataset_name", "k", "system_prompt_name", "temperature"), Question: ("key", "domain"),
}
NOT_OFFERED_BLANK = {"dataset_name", "domain"}


@dataclass(frozen=True)
class _Column:
    """The choices of a filter on one column of CHOICE_COLUMNS (called alone, e.g. by the API schema; a
    filterset reads them through its _ChoiceLists)."""

    model: type
    field: str

    def __call__(self) -> list[tuple[str, str]]:
        return _ChoiceLists().column(self)


class _ChoiceLists:
    """One filterset's choice lists, each read once: Django calls a choices callable at every read (validation
    and the form's <select> read each list twice), the columns of a table come from one query, and both persona
    filters share one category list."""

    def __init__(self) -> None:
        self._tables: dict[type, dict[str, list]] = {}
        self._lists: dict[Callable, list] = {}

    def column(self, column: _Column) -> list[tuple[str, str]]:
        if column.model not in self._tables:
            names = CHOICE_COLUMNS[column.model]
            rows = list(column.model.objects.order_by().values_list(*names).distinct())
            # Sorted by code point (what ORDER BY gives under the C collation this database uses).
            self._tables[column.model] = {name: sorted({row[i] for row in rows}) for i, name in enumerate(names)}
        values = self._tables[column.model][column.field]
        # str(float) both here and in the charts' links, so a link's temperature is always one of these choices.
        return [(str(v), str(v)) for v in values if v != "" or column.field not in NOT_OFFERED_BLANK]

    def once(self, choices: Callable[[], list]) -> list:
        if choices not in self._lists:
            self._lists[choices] = choices()
        return self._lists[choices]


def _category_choices() -> list[tuple[str, str]]:
    # The persona taxonomy is data owned by `judging`; looked up by name so transcripts never imports it.
    category = apps.get_model("judging", "PersonaCategory")
    seen: dict[str, str] = {}
    for key, name in category.objects.order_by("position").values_list("key", "name"):
        seen.setdefault(key, name)
    return list(seen.items())


class _StrictNullBooleanField(forms.NullBooleanField):
    """true/false (or 1/0), empty for "either"; anything else is an error, where Django's field would quietly
    read "null" or a typo as "either" and return everything. A text input: Django's select widget would
    turn the unknown value into "either" before this field sees it."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in (True, "true", "True", "1"):
            return True
        if value in (False, "false", "False", "0"):
            return False
        raise forms.ValidationError("Enter true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = _StrictNullBooleanField


class IntegerFilter(django_filters.NumberFilter):
    """A whole number (django-filter's NumberFilter takes decimals: k=0.5 would quietly match nothing)."""

    field_class = forms.IntegerField


class TranscriptFilter(django_filters.FilterSet):
    experiment = django_filters.ModelChoiceFilter(queryset=Experiment.objects.all())
    model = django_filters.ChoiceFilter(choices=_Column(Condition, "model_name"), method="_by_condition", label="Model")
    dataset = django_filters.ChoiceFilter(
        choices=_Column(Condition, "dataset_name"), method="_by_condition", label="Dataset"
    )
    k = django_filters.ChoiceFilter(choices=_Column(Condition, "k"), method="_by_condition", label="k (examples)")
    cot = django_filters.ChoiceFilter(choices=CotMode.choices, method="_by_condition", label="CoT mode")
    system_prompt = django_filters.ChoiceFilter(
        choices=_Column(Condition, "system_prompt_name"), method="_by_condition", label="System prompt"
    )
    temperature = django_filters.ChoiceFilter(
        choices=_Column(Condition, "temperature"), method="_by_condition", label="Temperature"
    )
    question = django_filters.ChoiceFilter(choices=_Column(Question, "key"), method="_by_question", label="Question")
    domain = django_filters.ChoiceFilter(choices=_Column(Question, "domain"), method="_by_question", label="Domain")
    status = django_filters.ChoiceFilter(choices=Transcript.Status.choices)
    misaligned = StrictBooleanFilter()
    counted = StrictBooleanFilter(method="_by_counted", label="Counted in rates")
    aligned = django_filters.RangeFilter()
    coherent = django_filters.RangeFilter()
    judge_category = django_filters.ChoiceFilter(choices=_category_choices, label="Judge persona")
    human_category = django_filters.ChoiceFilter(choices=_category_choices, label="Human consensus")
    labelled = StrictBooleanFilter(method="_by_labelled", label="Labelled by auditors")
    q = django_filters.CharFilter(method="_by_text", label="Search")

    class Meta:
        model = Transcript
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        lists = _ChoiceLists()
        for declared in self.filters.values():
            choices = declared.extra.get("choices")
            if isinstance(choices, _Column):
                declared.extra["choices"] = partial(lists.column, choices)
            elif callable(choices):
                declared.extra["choices"] = partial(lists.once, choices)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        data = self.form.cleaned_data
        conditions = {
            field: data[name] for name, field in CONDITION_FILTERS.items() if data.get(name) not in (None, "")
        }
        if conditions:
            ids = list(Condition.objects.filter(**conditions).order_by().values_list("pk", flat=True))
            queryset = queryset.filter(condition_id__in=ids)
        questions = {field: data[field] for field in ("question", "domain") if data.get(field)}
        if questions:
            lookups = {"key": questions.get("question"), "domain": questions.get("domain")}
            ids = list(Question.objects.filter(**{k: v for k, v in lookups.items() if v}).order_by().values_list(
                "pk", flat=True))
            queryset = queryset.filter(question_id__in=ids)
        return super().filter_queryset(queryset)

    def _by_condition(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset  # applied together with the other condition filters in filter_queryset

    _by_question = _by_condition

    def _by_counted(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        """true: the transcripts a rate's n counts (judged and not excluded, so `misaligned` is set)."""
        if value is None:
            return queryset
        return queryset.filter(misaligned__isnull=not value)

    def _by_labelled(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        item = apps.get_model("judging", "QueueItem")
        labelled = Exists(item.objects.filter(transcript=OuterRef("pk"), label_count__gt=0))
        return queryset.filter(labelled if value else ~labelled)

    def _by_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        question_ids = list(Question.objects.filter(text__icontains=value).values_list("pk", flat=True))
        in_question = Q(question_id__in=question_ids) if question_ids else Q(pk__in=[])
        if connection.vendor != "postgresql":
            return queryset.filter(Q(reasoning__icontains=value) | Q(answer__icontains=value) | in_question)
        matches = RawSQL(  # noqa: S611 — a constant expression; the search text is a bound parameter
            f"{FULLTEXT_SQL} @@ websearch_to_tsquery('english'::regconfig, %s)", (value,), output_field=BooleanField()
        )
        return queryset.filter(Q(matches) | in_question) if question_ids else queryset.filter(matches)


def filter_transcripts(params, queryset: QuerySet | None = None) -> TranscriptFilter:
    """The bound filter for a querystring (a QueryDict or dict); `.qs` is the filtered queryset."""
    return TranscriptFilter(params, queryset=queryset if queryset is not None else Transcript.objects.all())


# ---- keyset paging ---------------------------------------------------------------------------------------


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
