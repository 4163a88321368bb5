"""The transcript filter, defined once for the browser, the charts, the exports and the API (keyset paging of
what it selects: transcripts.paging).

Everything here reads the verdict cache on Transcript (aligned, coherent, misaligned, judge_category,
human_category) that `judging` keeps in step, so a filter never joins score or label tables. Condition-
and question-level filters are resolved to id lists first: those tables are small, and `condition_id IN
(…)` lets PostgreSQL walk the primary key (or a covering index) instead of joining a million rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from analysis.axes import AXES, AXIS
from discovery import filtering as discovery
from judging.models import PersonaCategory, QueueItem
from transcripts.models import Condition, CotMode, Experiment, Question, Transcript

# Must stay identical to the expression of the GIN index in migration 0005_fulltext_index.
FULLTEXT_SQL = "to_tsvector('english'::regconfig, reasoning || ' ' || answer)"

# Filters resolved to one list of condition ids: one per condition axis (name → Condition field).
CONDITION_FILTERS = {axis.name: axis.field for axis in AXES}


# The columns of the small condition and question tables whose distinct values the filter offers as choices (the
# CoT modes are a fixed list); a blank dataset or domain means "none" and is not offered.
CHOICE_COLUMNS = {
    Condition: tuple(axis.field for axis in AXES if axis.field != "cot_mode"), Question: ("key", "domain"),
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
    seen: dict[str, str] = {}
    for key, name in PersonaCategory.objects.order_by("position").values_list("key", "name"):
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


def _axis_filter(name: str) -> django_filters.ChoiceFilter:
    """The filter of one condition axis (applied with the other axes' in TranscriptFilter.filter_queryset)."""
    axis = AXIS[name]
    choices = CotMode.choices if axis.field == "cot_mode" else _Column(Condition, axis.field)
    return django_filters.ChoiceFilter(choices=choices, method="_by_condition", label=axis.label)


class TranscriptFilter(django_filters.FilterSet):
    experiment = django_filters.ModelChoiceFilter(queryset=Experiment.objects.all())
    model = _axis_filter("model")
    dataset = _axis_filter("dataset")
    k = _axis_filter("k")
    cot = _axis_filter("cot")
    system_prompt = _axis_filter("system_prompt")
    temperature = _axis_filter("temperature")
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
    # Discovery (docs/discovery.md): a cluster's members, and "more like this". Declared last: the nearest
    # reasonings are taken among what the filters above selected.
    cluster = django_filters.CharFilter(method="_by_cluster", label="Cluster (run:label)", max_length=24)
    like = django_filters.NumberFilter(method="_by_like", label="More like transcript", min_value=1)
    like_text = django_filters.CharFilter(method="_by_like", label="More like this text", max_length=4000)
    like_n = django_filters.NumberFilter(method="_by_like", label="How many alike", min_value=1,
                                         max_value=discovery.MAX_NEIGHBOURS)

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
        labelled = Exists(QueueItem.objects.filter(transcript=OuterRef("pk"), label_count__gt=0))
        return queryset.filter(labelled if value else ~labelled)

    def _by_cluster(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        try:
            return queryset.filter(pk__in=discovery.cluster_members(value))
        except ValidationError:
            return queryset.none()

    def _by_like(self, queryset: QuerySet, name: str, value) -> QuerySet:
        """The nearest `like_n` reasonings (by meaning) to transcript `like` or to `like_text`, among the rest of
        the filter's result. Applied once, for whichever of the two is given (`like` wins)."""
        data = self.form.cleaned_data
        like, text = data.get("like"), (data.get("like_text") or "").strip()
        if name == "like_n" or (name == "like_text" and like) or value in (None, ""):
            return queryset
        n = int(data.get("like_n") or discovery.DEFAULT_NEIGHBOURS)
        narrowed = any(data.get(other) not in (None, "", [], slice(None, None)) for other in data
                       if other not in ("like", "like_text", "like_n"))
        among = list(queryset.values_list("pk", flat=True)) if narrowed else None
        found = (discovery.nearest_to_transcript(int(like), n, among) if like
                 else discovery.nearest_to_text(text, n, among))
        return queryset.filter(pk__in=[pk for pk, _ in found])

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
