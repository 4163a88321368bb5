"""REST API for experiments and conditions (transcripts, which take the browser's filters, are browse.api's).
Researchers only: auditors get 403 (they work in the annotation workspace), anonymous clients 401. Lists page
with a cursor. Experiments are defined (with the estimate),
launched, cancelled, resumed and retried by the same functions as in the browser, so the same rules hold:
a spec names endpoints and never describes one, a name in use is refused, and only the experiment's owner or
an admin acts on it."""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.auth.decorators import login_not_required
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from .access import IsResearcher, MayRunExperiment
from .experiments.actions import ACTIONS
from .experiments.estimate import estimate
from .experiments.planning import define_experiment
from .experiments.spec import NameTaken, SpecError, parse_spec
from .models import Condition, Experiment
from .serializers import (
    ConditionSerializer,
    DefinedExperimentSerializer,
    ExperimentActionSerializer,
    ExperimentDefinitionSerializer,
    ExperimentSerializer,
)

RESEARCHERS = [IsAuthenticated, IsResearcher]
OWNER_OR_ADMIN = [*RESEARCHERS, MayRunExperiment]


class NewestFirst(CursorPagination):
    """Keyset pages by id, newest first: constant cost however deep the page. A `page_size` that is not a
    whole number from 1 to `max_page_size` is refused (DRF would quietly use the default instead)."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if not raw:  # absent or empty, like an empty filter: the default
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class ExperimentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Experiment.objects.all()
    serializer_class = ExperimentSerializer
    permission_classes = RESEARCHERS
    pagination_class = NewestFirst
    filterset_fields = ["status"]

    @extend_schema(request=ExperimentDefinitionSerializer, responses={
        201: DefinedExperimentSerializer,
        409: OpenApiResponse(OpenApiTypes.OBJECT, description=(
            'An experiment with this name exists: `{"detail": "…"}`. Experiments are never redefined; nothing '
            "changed. Choose another name (its owner or an admin runs the existing one with its actions).")),
    })
    def create(self, request, *args, **kwargs):
        """Define a new experiment from a spec, as the form's confirm step does; it stays a draft until `launch`.
        The answer carries the estimate (calls, tokens and cost per endpoint, judge included). A name in use
        answers 409."""
        definition = ExperimentDefinitionSerializer(data=request.data)
        definition.is_valid(raise_exception=True)
        try:
            spec = parse_spec(definition.validated_data["spec"])
            experiment = define_experiment(spec, request.user)
        except NameTaken as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except SpecError as exc:
            return Response({"spec": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        experiment.estimate = estimate(spec)
        return Response(DefinedExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)

    # The actions are the owner's or an admin's (get_object checks MayRunExperiment): 403 for other researchers.
    def _act(self, name: str) -> Response:
        experiment = self.get_object()
        affected = ACTIONS[name](experiment)
        experiment.refresh_from_db()
        experiment.affected = affected
        return Response(ExperimentActionSerializer(experiment).data)

    @extend_schema(request=None, responses=ExperimentActionSerializer)
    @action(detail=True, methods=["post"], permission_classes=OWNER_OR_ADMIN)
    def launch(self, request, pk=None):
        """Start (or restart) generation; `affected` is how many work messages were sent."""
        return self._act("launch")

    @extend_schema(request=None, responses=ExperimentActionSerializer)
    @action(detail=True, methods=["post"], permission_classes=OWNER_OR_ADMIN)
    def cancel(self, request, pk=None):
        """Stop handing out slots (requests in flight finish); `affected` is how many slots were cancelled."""
        return self._act("cancel")

    @extend_schema(request=None, responses=ExperimentActionSerializer)
    @action(detail=True, methods=["post"], permission_classes=OWNER_OR_ADMIN)
    def resume(self, request, pk=None):
        """Put cancelled slots back in line and launch."""
        return self._act("resume")

    @extend_schema(request=None, responses=ExperimentActionSerializer)
    @action(detail=True, methods=["post"], permission_classes=OWNER_OR_ADMIN, url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Give failed slots a fresh set of attempts and launch."""
        return self._act("retry-failed")


class IntegerFilter(django_filters.NumberFilter):
    """A whole number (django-filter's NumberFilter takes decimals: k=0.5 would quietly match nothing)."""

    field_class = forms.IntegerField


class ConditionFilter(django_filters.FilterSet):
    k = IntegerFilter()

    class Meta:
        model = Condition
        fields = ["experiment", "model_name", "dataset_name", "k", "cot_mode"]


class ConditionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Condition.objects.select_related("endpoint")
    serializer_class = ConditionSerializer
    permission_classes = RESEARCHERS
    pagination_class = NewestFirst
    filterset_class = ConditionFilter


def open_urls(router: SimpleRouter) -> list:
    """The router's URL patterns, exempt from the login redirect: DRF authenticates and answers 401/403."""
    for pattern in router.urls:
        login_not_required(pattern.callback)
    return list(router.urls)


router = SimpleRouter()
router.register("experiments", ExperimentViewSet)
router.register("conditions", ConditionViewSet)

urlpatterns = open_urls(router)
