from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from analysis.axes import AXIS_FIELDS

from . import endpoints
from .access import ADMIN, has_role
from .models import Condition, Dataset, Endpoint, Example, Experiment, Question, QuestionSet, Transcript


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "n_examples", "synthetic", "created_at"]
    list_filter = ["synthetic"]
    search_fields = ["name", "description"]
    readonly_fields = ["content_hash"]


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ["dataset", "position"]
    list_filter = ["dataset"]
    list_select_related = ["dataset"]


class QuestionInline(admin.TabularInline):
    model = Question
    fields = ["key", "domain", "text"]
    extra = 0


@admin.register(QuestionSet)
class QuestionSetAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    inlines = [QuestionInline]


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["key", "question_set", "domain"]
    list_filter = ["question_set", "domain"]
    search_fields = ["key", "text"]


class EndpointForm(forms.ModelForm):
    # A plain field so that `local` (the embedded server) is accepted here; transcripts.endpoints resolves it and
    # validates the URL with the model's validator, like every other field.
    base_url = forms.CharField(max_length=500, help_text="http(s) URL of the OpenAI-compatible API, or `local`.")

    class Meta:
        model = Endpoint
        fields = ["name", *endpoints.FIELDS]
        exclude = ["base_url"]  # noqa: DJ006 - the declared field above replaces the model field, unvalidated by it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial.setdefault("base_url", self.instance.base_url)

    def clean(self):
        data = super().clean()
        fields = {field: data[field] for field in endpoints.FIELDS if field in data}
        try:
            endpoints.build_version(name=data.get("name") or self.instance.name, **fields)
        except ValidationError as exc:
            self.add_error(None, exc)
        return data

    def validate_unique(self):
        # Version numbers and the one-current rule are save_endpoint's; this form's instance is never saved.
        pass


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Endpoints are admins' alone. Saving a change makes the next version (transcripts.endpoints.save_endpoint)
    rather than editing the row: conditions and rubric versions defined before keep calling theirs. Older
    versions are read-only history; nothing is deleted."""

    form = EndpointForm
    list_display = ["name", "version", "is_current", "model", "purpose", "base_url", "api_key_env", "max_concurrency",
                    "requests_per_minute", "tokens_per_minute", "created_by", "created_at"]
    list_filter = ["is_current", "purpose"]
    search_fields = ["name", "model", "base_url"]
    HISTORY = ["version", "is_current", "created_by", "created_at"]

    def has_module_permission(self, request) -> bool:
        return has_role(request.user, ADMIN)

    def has_view_permission(self, request, obj=None) -> bool:
        return has_role(request.user, ADMIN)

    def has_add_permission(self, request) -> bool:
        return has_role(request.user, ADMIN)

    def has_change_permission(self, request, obj=None) -> bool:
        return has_role(request.user, ADMIN) and (obj is None or obj.is_current)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        return ["name", *endpoints.FIELDS, *(self.HISTORY if obj else [])]

    def get_readonly_fields(self, request, obj=None):
        # A change is to this endpoint: another name would be another endpoint.
        return ["name", *self.HISTORY] if obj else []

    def save_model(self, request, obj, form, change) -> None:
        fields = {field: form.cleaned_data[field] for field in endpoints.FIELDS}
        saved = endpoints.save_endpoint(name=obj.name, user=request.user, **fields)
        # The admin's messages and "save and continue" follow `obj`: point it at the version now current.
        obj.pk, obj.version, obj.is_current = saved.pk, saved.version, saved.is_current


class ConditionInline(admin.TabularInline):
    model = Condition
    fields = list(AXIS_FIELDS)
    extra = 0
    show_change_link = True


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "created_by", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [ConditionInline]


@admin.register(Condition)
class ConditionAdmin(admin.ModelAdmin):
    list_display = ["experiment", *AXIS_FIELDS]
    list_filter = ["experiment", "model_name", "dataset_name", "k", "cot_mode"]


@admin.register(Transcript)
class TranscriptAdmin(admin.ModelAdmin):
    list_display = ["id", "experiment", "condition", "question", "sample_index", "status", "finish_reason"]
    list_filter = ["status", "experiment"]
    list_select_related = ["experiment", "condition", "question"]
    raw_id_fields = ["condition", "question", "experiment"]
    search_fields = ["answer"]
    show_full_result_count = False
