"""Experiment pages: define (form → confirm with estimates → launch), follow live, cancel / resume / retry.
The experiment's own page reads judging's results too, so it lives in browse (browse.experiment_views)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from em_site import bounded

from .access import OWNER_OR_ADMIN, may_run, researcher_required
from .endpoints import LOCAL_EMBEDDER, LOCAL_JUDGE
from .experiments.actions import ACTIONS, launch
from .experiments.estimate import CACHE_ASSUMPTION, estimate
from .experiments.planning import define_experiment, refuse_taken_name
from .experiments.progress import progress, slot_counts
from .experiments.spec import NameTaken, SpecError, parse_spec
from .models import Condition, Dataset, Endpoint, Experiment, Question, QuestionSet, Transcript
from .prompting import COT_MODES


def _numbers(value: str, field: str, cast) -> list:
    try:
        return [cast(part) for part in value.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise forms.ValidationError(f"{field}: numbers separated by commas, e.g. 0, 8, 16") from None


class ByName:
    """Endpoints are offered by name (their current version): the spec names them, never describes them."""

    def label_from_instance(self, obj: Endpoint) -> str:
        return f"{obj.name} ({obj.model})"


class EndpointChoice(ByName, forms.ModelMultipleChoiceField):
    pass


class JudgeChoice(ByName, forms.ModelChoiceField):
    pass


# What the form says in place of a list with nothing to choose from: why, and what to do.
EMPTY_CHOICES = {
    "endpoints": "No endpoint for generation is loaded: an admin loads them (`manage.py load_endpoints FILE.yaml`, "
                 "or the Django admin); `make run` loads the embedded model's.",
    "datasets": "No dataset yet: import a chat JSONL file, or the demo's with `manage.py load_demo`.",
    "questions": "No question set yet: import an EM YAML file or an id,question,domain CSV.",
}


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    # Each list offers only the endpoints whose purpose allows it (Endpoint.Purpose): the embedded judge is the
    # generation endpoint `local`'s own server under another name, and offering it here read as a second model.
    # The embedded embedder answers no chat: offered neither to generate nor to judge.
    endpoints = EndpointChoice(
        Endpoint.offered_for(Endpoint.Purpose.GENERATION).exclude(name=LOCAL_EMBEDDER), to_field_name="name",
        widget=forms.CheckboxSelectMultiple, label="Generate with",
    )
    judge = JudgeChoice(
        Endpoint.offered_for(Endpoint.Purpose.JUDGE).exclude(name=LOCAL_EMBEDDER), to_field_name="name",
        required=False,
        empty_label=f"default ({LOCAL_JUDGE}, if loaded)",
        help_text="Scores every transcript (aligned, coherent; persona with CoT). Its calls count in the estimate.",
    )
    budget_usd = forms.DecimalField(
        label="Budget (USD)", required=False, min_value=Decimal("0.01"), decimal_places=2,
        help_text="Optional: stop handing out work once generation and judging together cost this much.",
    )
    datasets = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    questions = forms.ChoiceField(label="Question set")
    question_keys = forms.MultipleChoiceField(
        label="Questions", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to ask every question of the set; tick some to ask only those.",
    )
    k = forms.CharField(initial="0, 8, 16", help_text="In-context examples per prompt, comma-separated.")
    cot = forms.MultipleChoiceField(
        choices=[(m, m) for m in COT_MODES], initial=["off"], widget=forms.CheckboxSelectMultiple, label="CoT",
    )
    system_prompts = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False,
        help_text="Optional axis: one variant per line as `name: text` (`default:` alone means none).",
    )
    samples = forms.IntegerField(min_value=1, initial=2)
    temperature = forms.CharField(initial="1.0", help_text="A number, or several comma-separated (an axis).")
    max_tokens = forms.IntegerField(min_value=1, initial=200)
    seed = forms.IntegerField(min_value=0, initial=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mark_purposes()
        names = Dataset.objects.order_by("name").values_list("name", flat=True).distinct()
        self.fields["datasets"].choices = [(n, n) for n in names]
        self.fields["questions"].choices = [(n, n) for n in QuestionSet.objects.values_list("name", flat=True)]
        # Grouped by set; a value names its set too ("set/key"), since two sets may share a question id.
        by_set: dict[str, list[tuple[str, str]]] = {}
        for set_name, key in Question.objects.order_by("question_set__name", "position").values_list(
                "question_set__name", "key"):
            by_set.setdefault(set_name, []).append((f"{set_name}/{key}", key))
        self.fields["question_keys"].choices = list(by_set.items())
        for name, note in EMPTY_CHOICES.items():
            field = self.fields[name]
            empty = not field.queryset.exists() if name == "endpoints" else not field.choices
            field.empty_note = note if empty else ""

    def _mark_purposes(self) -> None:
        """Say which endpoints are for judging only, and group the judges by purpose."""
        judges = list(self.fields["judge"].queryset)
        judge_only = [e.name for e in judges if e.purpose == Endpoint.Purpose.JUDGE]
        self.fields["endpoints"].help_text = (
            "The models that answer. Endpoints are created and changed by admins (Django admin or "
            "`manage.py load_endpoints`)" + (f"; judging only, so offered as the judge alone: "
                                             f"{', '.join(f'`{n}`' for n in judge_only)}." if judge_only else ".")
        )
        label = self.fields["judge"].label_from_instance
        groups = [(purpose.label.capitalize(), [(e.name, label(e)) for e in judges if e.purpose == purpose])
                  for purpose in (Endpoint.Purpose.JUDGE, Endpoint.Purpose.ANY)]
        self.fields["judge"].choices = [("", self.fields["judge"].empty_label)] + [g for g in groups if g[1]]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        try:
            refuse_taken_name(name)
        except NameTaken as exc:
            raise forms.ValidationError(str(exc)) from None
        return name

    def clean_k(self) -> list[int]:
        return _numbers(self.cleaned_data["k"], "k", int)

    def clean_temperature(self) -> list[float]:
        return _numbers(self.cleaned_data["temperature"], "temperature", float)

    def clean(self) -> dict:
        data = super().clean()
        chosen_set = data.get("questions")
        picked = [value.split("/", 1) for value in data.get("question_keys") or []]
        if chosen_set and any(set_name != chosen_set for set_name, _ in picked):
            self.add_error("question_keys", f"Tick questions of the chosen set {chosen_set!r} only.")
        data["question_keys"] = [key for _, key in picked]
        return data

    def clean_system_prompts(self) -> dict | None:
        variants = {}
        for line in self.cleaned_data["system_prompts"].splitlines():
            if not line.strip():
                continue
            name, sep, text = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(f"expected `name: text`, got {line!r}")
            variants[name.strip()] = text.strip() or None
        return variants or None

    def to_spec(self) -> dict:
        """The same definition a YAML file would give: one code path from here on."""
        data = self.cleaned_data
        spec = {
            "name": data["name"], "description": data["description"],
            "endpoints": [e.name for e in data["endpoints"]],
            "datasets": data["datasets"], "k": data["k"], "cot": data["cot"],
            "questions": {"set": data["questions"], "keys": data["question_keys"]} if data["question_keys"]
            else data["questions"],
            "samples": data["samples"], "temperature": data["temperature"], "max_tokens": data["max_tokens"],
            "seed": data["seed"],
        }
        if data["system_prompts"]:
            spec["system_prompts"] = data["system_prompts"]
        if data["judge"]:
            spec["judge"] = data["judge"].name
        if data["budget_usd"]:
            spec["budget_usd"] = float(data["budget_usd"])
        return spec


@researcher_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    rows = list(Experiment.objects.order_by("-created_at"))
    counts = slot_counts("experiment_id", [e.pk for e in rows])
    for experiment in rows:
        set_counts(experiment, counts[experiment.pk])
    return render(request, "transcripts/experiment_list.html", {"experiments": rows})


def set_counts(row: Experiment | Condition, counts: Counter) -> None:
    """The slot counts the experiment list and the conditions table (browse.experiment_views) show, from
    slot_counts."""
    row.n_slots = sum(counts.values())
    row.n_done = counts[Transcript.Status.DONE]
    row.n_failed = counts[Transcript.Status.FAILED]


def _field_of(form: forms.Form, error: SpecError) -> str | None:
    """The form field a definition error is about: SpecError messages start with the definition's field
    ("k: 30 is larger than dataset …", "questions.keys: …"), which the form names alike. None (the top of the
    form) for an error about the whole definition."""
    prefix = str(error).split(":", 1)[0]
    field = {"questions.keys": "question_keys"}.get(prefix, prefix.split(".")[0])
    return field if field in form.fields else None


@researcher_required
def experiment_new(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: validate and show the confirm step with estimates; POST with `confirm`: launch.
    The confirm step trusts nothing from the page: the spec it posts back goes through parse_spec again."""
    if request.method == "POST" and "confirm" in request.POST:
        try:
            spec = parse_spec(bounded.load_json(request.POST.get("spec", "")))
            experiment = define_experiment(spec, user=request.user)
        except (ValueError, SpecError) as exc:  # JSONDecodeError and bounded.Refused are ValueErrors
            return render(request, "transcripts/experiment_form.html",
                          {"form": ExperimentForm(), "refused": f"Not launched: {exc}"}, status=400)
        launch(experiment)
        messages.success(request, f"Experiment {experiment.name} launched.")
        return redirect("experiment-detail", pk=experiment.pk)

    form = ExperimentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        spec = form.to_spec()
        try:
            parsed = parse_spec(spec)
        except SpecError as exc:
            form.add_error(_field_of(form, exc), str(exc))
        else:
            estimates = estimate(parsed)
            return render(request, "transcripts/experiment_confirm.html", {
                "spec": parsed, "spec_json": json.dumps(spec), "estimates": estimates,
                "total_cost": sum(row.cost for row in estimates),
                "total_list_cost": sum(row.list_cost or row.cost for row in estimates),
                "cache_assumption": CACHE_ASSUMPTION,
            })
    return render(request, "transcripts/experiment_form.html", {"form": form})


@researcher_required
def experiment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the detail page; htmx polls it while the experiment runs."""
    experiment = get_object_or_404(Experiment, pk=pk)
    return render(request, "transcripts/experiment_progress.html", progress_context(experiment))


def progress_context(experiment: Experiment) -> dict:
    """The context of experiment_progress.html, which the experiment page (browse.experiment_views) includes."""
    state = progress(experiment)
    recent = (Transcript.objects.filter(pk__in=state["recent_ids"]).select_related("condition", "question")
              .order_by("-finished_at"))
    # The conditions table is part of the polled partial and shows the counts the bar sums, so the two
    # never disagree (a table outside it stayed at 0/5 while the bar said 10/10).
    conditions = list(experiment.conditions.select_related("endpoint"))
    for condition in conditions:
        set_counts(condition, state["by_condition"][condition.pk])
    return {"experiment": experiment, "progress": state, "recent": recent, "conditions": conditions}


NOTES = {
    "launch": "Launched.",
    "cancel": "Cancelled: {n} pending slots will not run.",
    "resume": "Resumed.",
    "retry-failed": "Failed slots are queued again.",
}


@require_POST
@researcher_required
def experiment_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    if not may_run(request.user, experiment):
        raise PermissionDenied(OWNER_OR_ADMIN)
    n = ACTIONS[action](experiment)
    messages.success(request, NOTES[action].format(n=n))
    return redirect("experiment-detail", pk=experiment.pk)
