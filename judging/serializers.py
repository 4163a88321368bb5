"""API representations of judge scores and human labels."""

from __future__ import annotations

from rest_framework import serializers

from .models import JudgeScore, Label


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


class LabelSerializer(serializers.ModelSerializer):
    transcript = serializers.IntegerField(source="item.transcript_id", read_only=True)
    queue = serializers.CharField(source="item.queue.name", read_only=True)
    auditor = serializers.CharField(source="auditor.username", read_only=True)
    primary = serializers.CharField(source="primary.key", read_only=True, allow_null=True, default=None)
    categories = serializers.SlugRelatedField(slug_field="key", many=True, read_only=True)

    class Meta:
        model = Label
        fields = ["id", "transcript", "queue", "auditor", "primary", "categories", "note", "confidence", "created_at"]
        read_only_fields = fields
