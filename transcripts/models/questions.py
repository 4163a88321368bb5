"""The neutral evaluation questions an experiment asks, in named sets."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class QuestionSet(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64)
    source_filename = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Question(models.Model):
    """A neutral evaluation question. `key` is the id researchers know it by (e.g. `i_feel_bored`)."""

    question_set = models.ForeignKey(QuestionSet, on_delete=models.CASCADE, related_name="questions")
    key = models.CharField(max_length=200)
    text = models.TextField(help_text="The first paraphrase; the one shown in lists.")
    paraphrases = models.JSONField(default=list)
    domain = models.CharField(max_length=100, blank=True, db_index=True)
    system_prompt = models.TextField(blank=True)
    judge_prompts = models.JSONField(default=dict, blank=True, help_text="Per-question judge templates, if any.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["question_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["question_set", "key"], name="question_set_key_unique")
        ]

    def __str__(self) -> str:
        return self.key
