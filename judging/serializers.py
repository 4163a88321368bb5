"""API representations of judge scores and human labels."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Highlight, JudgeScore, Label, LabelRevision


class JudgeScoreSerializer(serializers.ModelSerializer):
    rubric = serializers.CharField(source="rubric_version.rubric.key", read_only=True)
    rubric_version = serializers.IntegerField(source="rubric_version.version", read_only=True)
    judge_model = serializers.CharField(source="rubric_version.judge_model", read_only=True)
    category = serializers.CharField(source="category.key", read_only=True, allow_null=True, default=None)
    # Blank until judged: declared so the schema's enum includes "" (drf-spectacular leaves it out otherwise).
    method = serializers.ChoiceField(choices=JudgeScore.Method.choices, allow_blank=True, read_only=True)

    class Meta:
        model = JudgeScore
        fields = [
            "id", "transcript", "rubric", "rubric_version", "judge_model", "status", "outcome", "method", "score",
            "category", "finished_at",
        ]
        read_only_fields = fields


class HighlightSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category.key", read_only=True)

    class Meta:
        model = Highlight
        fields = ["category", "start", "end"]
        read_only_fields = fields


class LabelRevisionSerializer(serializers.ModelSerializer):
    changed_by = serializers.CharField(source="changed_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = LabelRevision
        fields = ["changed_at", "changed_by", "source", "before", "after"]
        read_only_fields = fields


class LabelSerializer(serializers.ModelSerializer):
    transcript = serializers.IntegerField(source="item.transcript_id", read_only=True)
    queue = serializers.CharField(source="item.queue.name", read_only=True)
    auditor = serializers.CharField(source="auditor.username", read_only=True)
    primary = serializers.CharField(source="primary.key", read_only=True, allow_null=True, default=None)
    categories = serializers.SlugRelatedField(slug_field="key", many=True, read_only=True)
    highlights = HighlightSerializer(many=True, read_only=True)
    changes = serializers.SerializerMethodField()

    class Meta:
        model = Label
        fields = [
            "id", "transcript", "queue", "auditor", "misaligned", "alignment_score", "primary", "categories",
            "highlights", "note", "confidence", "seconds_spent", "created_at", "updated_at", "changes",
        ]
        read_only_fields = fields

    @extend_schema_field(LabelRevisionSerializer(many=True))
    def get_changes(self, label: Label) -> list[dict]:
        """The label's history (judging.annotation.label_history), from the item's prefetched revisions."""
        revisions = [r for r in label.item.label_revisions.all() if r.auditor_id == label.auditor_id]
        return LabelRevisionSerializer(revisions, many=True).data
