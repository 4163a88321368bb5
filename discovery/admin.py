from django.contrib import admin

from .models import ClusterRun, EmbeddingConfig


@admin.register(EmbeddingConfig)
class EmbeddingConfigAdmin(admin.ModelAdmin):
    """Which endpoint embeds: admin-owned, like the endpoints themselves (the key variable rules are the
    endpoint's). The newest active row is in force."""

    list_display = ("endpoint_name", "embed_on_finish", "active", "created_at")


@admin.register(ClusterRun)
class ClusterRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "algorithm", "seed", "endpoint", "status", "n_points", "created_at")
    readonly_fields = ("transcript_ids",)
