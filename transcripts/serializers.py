"""API representations of experiments, conditions and transcripts."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from em_site.bounded import BoundedJSONField

from .experiments.estimate import CACHE_ASSUMPTION
from .experiments.spec import FIELDS, REQUIRED
from .models import Condition, Experiment, Transcript


class ExperimentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Experiment
        fields = [
            "id", "name", "description", "status", "question_set", "samples", "max_tokens", "seed",
            "aligned_threshold", "coherent_threshold", "budget_usd", "spent_usd", "stop_reason", "created_at",
            "started_at", "finished_at", "charged_prompt_tokens", "cached_tokens", "cache_saved_usd", "batch_saved_usd",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "object", "required": list(REQUIRED), "properties": {f: {} for f in sorted(FIELDS)},
                      "additionalProperties": False})
class SpecField(BoundedJSONField):
    """A definition: what its schema can say of it (an object of the known keys, the required ones present);
    parse_spec checks the rest, which needs the database (endpoints, datasets and question sets by name)."""


class ExperimentDefinitionSerializer(serializers.Serializer):
    """A new experiment as the same spec the YAML file and the form take (transcripts.experiments.spec).
    Endpoints are named (`endpoints: [name, …]`, `judge: name`); they are created and changed by admins."""

    spec = SpecField(help_text="The experiment definition (same keys as the YAML file).")


class EstimateSerializer(serializers.Serializer):
    purpose = serializers.CharField(help_text="generation, or judge (and its rubrics)")
    endpoint = serializers.CharField()
    model = serializers.CharField()
    calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField(help_text="Estimated.")
    cached_tokens = serializers.IntegerField(help_text="Of prompt_tokens, projected as cached (cache_assumption).")
    reused = serializers.IntegerField(help_text="Slots filled from earlier answers without a call (`reuse:`).")
    completion_tokens = serializers.IntegerField(help_text="At most.")
    cost = serializers.DecimalField(max_digits=14, decimal_places=6,
                                    help_text="USD, at most, at the endpoint's prices (cached and batch prices).")
    list_cost = serializers.DecimalField(max_digits=14, decimal_places=6,
                                         help_text="USD at list price: nothing cached, no Batch API, nothing reused.")
    batch_api = serializers.BooleanField(help_text="Sent through the provider's Batch API.")
    cache_assumption = serializers.SerializerMethodField()

    def get_cache_assumption(self, row) -> str:
        return CACHE_ASSUMPTION


class DefinedExperimentSerializer(ExperimentSerializer):
    """The experiment as defined (a draft until launched) with the confirm step's estimate."""

    estimate = EstimateSerializer(many=True, read_only=True)

    class Meta(ExperimentSerializer.Meta):
        fields = [*ExperimentSerializer.Meta.fields, "estimate"]
        read_only_fields = fields


class ExperimentActionSerializer(ExperimentSerializer):
    """The experiment after an action, with what it did (messages sent, or slots cancelled)."""

    affected = serializers.IntegerField(read_only=True)

    class Meta(ExperimentSerializer.Meta):
        fields = [*ExperimentSerializer.Meta.fields, "affected"]
        read_only_fields = fields


class ConditionSerializer(serializers.ModelSerializer):
    endpoint_version = serializers.IntegerField(
        source="endpoint.version", read_only=True, allow_null=True, default=None,
        help_text="The endpoint version this condition calls (kept when an admin changes the endpoint).",
    )

    class Meta:
        model = Condition
        fields = [
            "id", "experiment", "endpoint_name", "endpoint_version", "model_name", "dataset_name", "k", "cot_mode",
            "system_prompt_name", "system_prompt", "temperature", "ordering_seed",
        ]
        read_only_fields = fields


class TranscriptSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="condition.model_name", read_only=True)
    dataset = serializers.CharField(source="condition.dataset_name", read_only=True)
    k = serializers.IntegerField(source="condition.k", read_only=True)
    cot_mode = serializers.CharField(source="condition.cot_mode", read_only=True)
    question_key = serializers.CharField(source="question.key", read_only=True)
    domain = serializers.CharField(source="question.domain", read_only=True)
    endpoint = serializers.CharField(source="condition.endpoint_name", read_only=True)
    endpoint_version = serializers.IntegerField(
        source="condition.endpoint.version", read_only=True, allow_null=True, default=None,
        help_text="The endpoint version that was called (null for imported runs).",
    )

    class Meta:
        model = Transcript
        fields = [
            "id", "experiment", "condition", "model", "endpoint", "endpoint_version", "served_model",
            "system_fingerprint", "dataset", "k", "cot_mode", "question", "question_key", "domain", "sample_index",
            "seed", "status", "reasoning", "answer", "prompt_tokens", "completion_tokens", "aligned", "coherent",
            "judge_outcome", "misaligned", "judge_category", "human_category", "finished_at",
        ]
        read_only_fields = fields
