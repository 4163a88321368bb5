"""REST API for judge scores and human labels (researchers only). Both accept every transcript filter of
the browser (transcripts.filters.TranscriptFilter): they return the scores and labels of the matching
transcripts."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.routers import SimpleRouter

from transcripts.api import RESEARCHERS, NewestFirst, open_urls
from transcripts.filters import TranscriptFilter, filter_transcripts

from .models import JudgeScore, Label
from .serializers import JudgeScoreSerializer, LabelSerializer


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
        elif isinstance(field, django_filters.ChoiceFilter) and isinstance(field.extra["choices"], list):
            enum = [value for value, _ in field.extra["choices"]]
        description = f"Transcript filter: {field.label or name}"
        parameters += [OpenApiParameter(n, kind, enum=enum, description=description) for n in names]
    return parameters


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
    queryset = Label.objects.select_related("item__queue", "auditor", "primary").prefetch_related("categories")
    serializer_class = LabelSerializer
    permission_classes = RESEARCHERS
    pagination_class = NewestFirst
    filter_backends: list = []
    transcript_path = "item__transcript"


router = SimpleRouter()
router.register("scores", JudgeScoreViewSet)
router.register("labels", LabelViewSet)

urlpatterns = open_urls(router)
