from __future__ import annotations

from django import forms
from django.contrib.auth.models import User

from em_site import bounded
from transcripts.access import AUDITOR
from transcripts.forms import UploadField

from ..models import AnnotationQueue, Highlight, PersonaCategory, Taxonomy
from .labels_io import CONFIDENCE
from .taxonomy import latest_versions


class QueueForm(forms.ModelForm):
    filter_query = forms.CharField(
        required=False,
        label="Transcript filter",
        help_text="The transcript browser's querystring, e.g. experiment=3&misaligned=true. "
        "Only finished transcripts are queued.",
        widget=forms.TextInput(attrs={"size": 80}),
    )

    class Meta:
        model = AnnotationQueue
        fields = [
            "name", "filter_query", "asks", "ask_alignment_score", "taxonomy", "overlap", "auditors", "instructions",
            "allow_multiple", "blind", "claim_minutes", "majority_share",
        ]
        widgets = {"auditors": forms.CheckboxSelectMultiple, "instructions": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["taxonomy"].queryset = Taxonomy.objects.filter(pk__in=[t.pk for t in latest_versions()])
        self.fields["auditors"].queryset = User.objects.filter(groups__name=AUDITOR, is_active=True).order_by(
            "username"
        )
        self.fields["overlap"].min_value = 1
        # A queue asks for the persona category unless told otherwise (as every queue did before verdicts).
        self.fields["asks"].required = False
        self.fields["majority_share"].min_value, self.fields["majority_share"].max_value = 0, 0.99

    def clean_asks(self) -> str:
        return self.cleaned_data["asks"] or AnnotationQueue.Asks.PERSONA

    def clean_filter_query(self) -> str:
        return self.cleaned_data["filter_query"].strip().lstrip("?")

    def clean(self):
        data = super().clean()
        auditors, overlap = data.get("auditors"), data.get("overlap")
        if auditors is not None and overlap and overlap > len(auditors):
            self.add_error("overlap", f"Overlap {overlap} needs at least {overlap} assigned auditors.")
        return data


class LabelForm(forms.Form):
    """An auditor's submission. `highlights` is a JSON list of {category, start, end} from annotate.js.
    Which answers are required follows what the queue asks (AnnotationQueue.asks, ask_alignment_score)."""

    categories = forms.ModelMultipleChoiceField(queryset=PersonaCategory.objects.none(), required=False)
    misaligned = forms.TypedChoiceField(
        choices=[("", "—"), ("true", "misaligned"), ("false", "not misaligned")],
        coerce=lambda value: value == "true", empty_value=None, required=False,
    )
    alignment_score = forms.IntegerField(required=False, min_value=0, max_value=100)
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    confidence = forms.TypedChoiceField(
        choices=[("", "—")] + [(str(i), str(i)) for i in CONFIDENCE], coerce=int, empty_value=None, required=False
    )
    seconds_spent = forms.FloatField(required=False, min_value=0, widget=forms.HiddenInput)
    highlights = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, queue: AnnotationQueue, **kwargs):
        super().__init__(*args, **kwargs)
        self.categories_by_key = {c.key: c for c in queue.taxonomy.categories.all()}
        self.fields["categories"].queryset = queue.taxonomy.categories.all()
        self.fields["categories"].to_field_name = "key"
        self.fields["categories"].required = queue.asks_persona
        self.fields["misaligned"].required = queue.asks_verdict
        self.fields["alignment_score"].required = queue.ask_alignment_score
        self.fields["categories"].error_messages["required"] = "Choose a category."
        self.fields["misaligned"].error_messages["required"] = "Say whether the answer is misaligned."
        self.fields["alignment_score"].error_messages["required"] = "Give an alignment score from 0 to 100."

    def clean_highlights(self) -> list[tuple[PersonaCategory, int, int]]:
        """At most Highlight.MAX_PER_LABEL spans, each with whole-number offsets (JSON reads Infinity, NaN and
        1e400 as floats); whether they lie inside the reasoning is checked against the transcript when the label
        is submitted."""
        raw = self.cleaned_data["highlights"] or "[]"
        try:
            spans = bounded.load_json(raw)
            if not isinstance(spans, list) or not all(isinstance(h, dict) for h in spans):
                raise TypeError
            parsed = [(self.categories_by_key[h["category"]], h["start"], h["end"]) for h in spans]
        except bounded.Refused as exc:
            raise forms.ValidationError(f"Highlights refused: {exc}.") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise forms.ValidationError("Malformed highlights: expected a list of {category, start, end}.") from exc
        if len(parsed) > Highlight.MAX_PER_LABEL:
            raise forms.ValidationError(
                f"Highlights: at most {Highlight.MAX_PER_LABEL} per label, got {len(parsed)}; merge overlapping ones."
            )
        for _, start, end in parsed:
            for offset in (start, end):
                if isinstance(offset, bool) or not isinstance(offset, int):
                    raise forms.ValidationError(
                        f"Highlights: start and end must be whole character offsets, got {str(offset)[:20]}."
                    )
        return parsed


class AdjudicationForm(forms.Form):
    category = forms.ModelChoiceField(queryset=PersonaCategory.objects.none(), required=False, empty_label="(no gold)")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, taxonomy: Taxonomy, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].queryset = taxonomy.categories.all()


class CategoryForm(forms.Form):
    key = forms.SlugField(max_length=50)
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    example = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    shortcut = forms.CharField(max_length=1, required=False)


class BaseCategoryFormSet(forms.BaseFormSet):
    def clean(self):
        super().clean()
        rows = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        for field in ("key", "shortcut"):
            values = [row[field] for row in rows if row.get(field)]
            if len(values) != len(set(values)):
                raise forms.ValidationError(f"Each category needs its own {field}.")
        if not rows:
            raise forms.ValidationError("A taxonomy needs at least one category.")


CategoryFormSet = forms.formset_factory(CategoryForm, formset=BaseCategoryFormSet, extra=2, can_delete=True)


class TaxonomyForm(forms.Form):
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class LabelsImportForm(forms.Form):
    file = UploadField(help_text="CSV with columns transcript_id, annotator, label (as exported).")
