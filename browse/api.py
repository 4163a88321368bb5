"""REST API for transcripts, judge scores and human labels (researchers only). All three accept every transcript
filter of the browser (browse.filters.TranscriptFilter): transcripts page with a cursor and export as CSV or JSON
Lines, scores and labels are those of the matching transcripts."""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.routers import SimpleRouter

from judging.models import JudgeScore, Label
from judging.serializers import JudgeScoreSerializer, LabelSerializer
from transcripts.api import RESEARCHERS, NewestFirst, open_urls
from transcripts.models import Transcript
from transcripts.serializers import TranscriptSerializer

from .filters import TranscriptFilter, filter_transcripts
from .views import EXPORT_FORMATS, export_response


def _transcript_filter_parameters() -> list[OpenApiParameter]:
    """The transcript filters as documented query parameters (range filters take `_min`/`_max`), typed as the
    filter reads them. Choices read from the database (models, datasets, questions…) stay plain strings: the
    schema does not change with the data."""
    parameters = []
    for name, field in TranscriptFilter.base_filters.items():
        names, kind, enum = [name], str, None
        if isinstance(field, django_filters.RangeFilter):
            names, kind = [f"{name}_min", f"{name}_max"], float
        elif isinstance(field, django_filters.ModelChoiceFilter):
            kind = int
        elif isinstance(field, django_filters.BooleanFilter):
            kind = bool
        elif isinstance(field, django_filters.NumberFilter):
            # With its bounds: a number the filter refuses (below min_value, above max_value) is not schema-valid.
            bounds = {"minimum": field.extra.get("min_value"), "maximum": field.extra.get("max_value")}
            kind = {"type": "number", **{key: value for key, value in bounds.items() if value is not None}}
        elif isinstance(field, django_filters.ChoiceFilter) and isinstance(field.extra["choices"], list):
            enum = [value for value, _ in field.extra["choices"]]
        description = f"Transcript filter: {field.label or name}"
        parameters += [OpenApiParameter(n, kind, enum=enum, description=description) for n in names]
    return parameters


# The filters documented by the same function on every list that takes them (django-filter's own schema left out
# the bounds of `like` and `like_n`, and the export's filters).
@extend_schema_view(list=extend_schema(parameters=_transcript_filter_parameters()))
class TranscriptViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Transcript.objects.select_related("condition__endpoint", "question")
    serializer_class = TranscriptSerializer
    permission_classes = RESEARCHERS
    filterset_class = TranscriptFilter
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[*_transcript_filter_parameters(),
                    OpenApiParameter("fmt", str, enum=EXPORT_FORMATS, description="Export format (csv).")],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR,
                   (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
                   (200, "application/zip"): OpenApiTypes.BINARY},
    )
    @action(detail=False, pagination_class=None)
    def export(self, request):
        """Every transcript matching the filters, streamed as CSV, JSON Lines (`fmt=jsonl`) or Parquet
        (`fmt=parquet`), or as an Inspect eval log (`fmt=eval`)."""
        fmt = request.query_params.get("fmt") or "csv"
        if fmt not in EXPORT_FORMATS:
            raise ValidationError({"fmt": [f"One of: {', '.join(EXPORT_FORMATS)}."]})
        return export_response(self.filter_queryset(Transcript.objects.all()), fmt)


class _ByTranscriptFilter:
    """Restricts a queryset to the transcripts selected by the querystring's transcript filters."""

    transcript_path = "transcript"

    def filter_queryset(self, queryset):
        filterset = filter_transcripts(self.request.query_params)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        if filterset.form.has_changed():
            queryset = queryset.filter(**{f"{self.transcript_path}__in": filterset.qs.values("pk")})
        return super().filter_queryset(queryset)


@extend_schema(parameters=_transcript_filter_parameters())
class JudgeScoreViewSet(_ByTranscriptFilter, viewsets.ReadOnlyModelViewSet):
    queryset = JudgeScore.objects.select_related("rubric_version__rubric", "category")
    serializer_class = JudgeScoreSerializer
    permission_classes = RESEARCHERS
    pagination_class = NewestFirst
    filter_backends: list = []


@extend_schema(parameters=_transcript_filter_parameters())
class LabelViewSet(_ByTranscriptFilter, viewsets.ReadOnlyModelViewSet):
    queryset = Label.objects.select_related("item__queue", "auditor", "primary").prefetch_related(
        "categories", "highlights__category", "item__label_revisions__changed_by"
    )
    serializer_class = LabelSerializer
    permission_classes = RESEARCHERS
    pagination_class = NewestFirst
    filter_backends: list = []
    transcript_path = "item__transcript"


router = SimpleRouter()
router.register("transcripts", TranscriptViewSet)
router.register("scores", JudgeScoreViewSet)
router.register("labels", LabelViewSet)

urlpatterns = open_urls(router)
