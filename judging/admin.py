from django.contrib import admin

from .models import (
    Adjudication,
    AnnotationQueue,
    Assignment,
    GoldItem,
    GoldRun,
    GoldSuite,
    Highlight,
    JudgeScore,
    Label,
    LabelRevision,
    PersonaCategory,
    QueueItem,
    Rubric,
    RubricVersion,
    Taxonomy,
)


class PersonaCategoryInline(admin.TabularInline):
    model = PersonaCategory
    extra = 0


@admin.register(Taxonomy)
class TaxonomyAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "created_at"]
    inlines = [PersonaCategoryInline]


class RubricVersionInline(admin.StackedInline):
    model = RubricVersion
    extra = 0
    readonly_fields = ["identity_hash"]


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    list_display = ["key", "kind"]
    inlines = [RubricVersionInline]


@admin.register(JudgeScore)
class JudgeScoreAdmin(admin.ModelAdmin):
    list_display = ["transcript", "rubric_version", "status", "outcome", "method", "score", "category"]
    list_filter = ["status", "outcome", "method", "rubric_version"]
    raw_id_fields = ["transcript"]
    show_full_result_count = False


@admin.register(AnnotationQueue)
class AnnotationQueueAdmin(admin.ModelAdmin):
    list_display = ["name", "taxonomy", "overlap", "blind", "created_at"]
    filter_horizontal = ["auditors"]


@admin.register(QueueItem)
class QueueItemAdmin(admin.ModelAdmin):
    list_display = ["queue", "transcript", "label_count"]
    raw_id_fields = ["transcript"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["item", "auditor", "status", "expires_at"]
    raw_id_fields = ["item"]


class ReadOnly:
    """Viewed, never written here: a submitted label changes only where the change is recorded
    (judging.annotation.label_history), and its history is a record. Deleting stays allowed, since deleting a queue or a
    user deletes their labels too and the admin refuses a deletion that cascades to a model it may not delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class HighlightInline(ReadOnly, admin.TabularInline):
    model = Highlight
    extra = 0


@admin.register(Label)
class LabelAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["item", "auditor", "confidence", "seconds_spent", "created_at"]
    raw_id_fields = ["item"]
    inlines = [HighlightInline]


@admin.register(LabelRevision)
class LabelRevisionAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["item", "auditor", "source", "changed_by", "changed_at"]
    list_filter = ["source"]
    raw_id_fields = ["item"]


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["item", "category", "adjudicator", "created_at"]
    raw_id_fields = ["item"]


class GoldItemInline(admin.TabularInline):
    model = GoldItem
    extra = 0
    raw_id_fields = ["transcript"]


@admin.register(GoldSuite)
class GoldSuiteAdmin(admin.ModelAdmin):
    list_display = ["name", "source_queue", "frozen_at", "created_by"]
    inlines = [GoldItemInline]


@admin.register(GoldRun)
class GoldRunAdmin(admin.ModelAdmin):
    list_display = ["suite", "kind", "aligned_version", "coherent_version", "persona_version", "recorded_at", "kappa"]
    list_filter = ["suite", "kind"]
