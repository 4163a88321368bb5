"""Persona-rationalisation categories, in versioned taxonomies."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Taxonomy(models.Model):
    """A versioned set of persona-rationalisation categories. Editing makes a new version."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        verbose_name_plural = "taxonomies"
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="taxonomy_name_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class PersonaCategory(models.Model):
    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="categories")
    key = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    example = models.TextField(blank=True)
    shortcut = models.CharField(max_length=1, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["taxonomy", "position"]
        verbose_name_plural = "persona categories"
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "key"], name="category_taxonomy_key_unique"),
        ]

    def __str__(self) -> str:
        return self.name
