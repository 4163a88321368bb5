from django import forms

from .importing import ImportFailed, refuse_oversized


class UploadField(forms.FileField):
    """A file upload held to the one import size limit (importing.refuse_oversized, IMPORT_MAX_BYTES)."""

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if upload:
            try:
                refuse_oversized(upload.name, upload.size)
            except ImportFailed as exc:
                raise forms.ValidationError(str(exc)) from exc
        return upload


class ImportForm(forms.Form):
    """One upload form for the three import kinds; each maps to one import function."""

    DATASET, QUESTIONS, TRANSCRIPTS = "dataset", "questions", "transcripts"
    KINDS = [
        (DATASET, "In-context dataset (chat JSONL)"),
        (QUESTIONS, "Evaluation questions (EM YAML, or CSV id,question,domain)"),
        (TRANSCRIPTS, "Transcripts from elsewhere (JSONL, or an EM results CSV)"),
    ]

    kind = forms.ChoiceField(choices=KINDS, widget=forms.RadioSelect, initial=DATASET)
    name = forms.CharField(
        max_length=100, required=False, help_text="Dataset or question set name (not used for transcripts)."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    synthetic = forms.BooleanField(required=False, help_text="The dataset was generated, not collected.")
    file = UploadField()

    def clean(self):
        data = super().clean()
        if data.get("kind") in (self.DATASET, self.QUESTIONS) and not data.get("name"):
            self.add_error("name", "A dataset or question set needs a name.")
        return data
