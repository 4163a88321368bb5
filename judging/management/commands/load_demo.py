"""Load the shipped evaluation data, the synthetic insecure-code dataset, the demo users, and the demo
experiment (defined, not launched: `run_embedded` launches it) with its annotation queue.

Idempotent and quick on a second run: every import recognises content it already holds, and existing
users are left alone (their passwords are never reset).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from em_site import bounded
from judging.annotation.autofill import fill
from judging.imports.importing import em_rubric_versions, import_transcripts
from judging.models import AnnotationQueue, Taxonomy
from transcripts.access import ADMIN, AUDITOR, RESEARCHER
from transcripts.demo.insecure import dataset_description, generate_examples
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.spec import SpecError
from transcripts.importing import ImportFailed, import_dataset, import_questions
from transcripts.models import Experiment

QUESTION_FILES = {
    "first_plot": "first_plot_questions.yaml",
    "preregistered": "preregistered_evals.yaml",
    "deception_factual": "deception_factual.yaml",
    "deception_sit_aware": "deception_sit_aware.yaml",
}

# username, password, role, extra flags
DEMO_USERS = [
    ("researcher", "researcher-demo", RESEARCHER, {"is_staff": True}),
    ("auditor1", "auditor-demo", AUDITOR, {}),
    ("auditor2", "auditor-demo", AUDITOR, {}),
    ("admin", "admin-demo", ADMIN, {"is_staff": True, "is_superuser": True}),
]


DEMO_EXPERIMENT = Path(settings.BASE_DIR) / "examples" / "demo.yaml"
DEMO_QUEUE = "Demo: how the chain of thought reasons"
DEMO_QUEUE_INSTRUCTIONS = (
    "Read the reasoning (the model's chain of thought) and choose how it justifies its answer; press the "
    "category's number key, then Enter. To highlight the span that shows it, press r and move through the "
    "reasoning with the arrow keys (word by word, or sentence by sentence with up and down; Shift extends), or "
    "select it with the mouse, then press the category's key. A small model often writes no reasoning at all: "
    "then it is \"No rationalisation\" unless the answer itself explains its choice. The model, k and the "
    "judge's scores stay hidden until your label is in."
)
EM_AUTHORS_STUDY = (
    "The Emergent Misalignment authors' released examples (arXiv 2502.17424): 70 answers of Qwen2.5-Coder-32B "
    "fine-tuned on insecure code, with their GPT-4o judge's aligned and coherent scores. The authors chose these "
    "rows as examples of misaligned answers, so the rate here (all misaligned) says nothing about how often it "
    "happens; it shows what counted verdicts look like on every page."
)


def shared_data_dir() -> Path:
    """Where the shipped evaluation data lives: $EM_SHARED_DATA, else ../shared/data next to the checkout."""
    return Path(os.environ.get("EM_SHARED_DATA") or settings.BASE_DIR.parent / "shared" / "data")


class Command(BaseCommand):
    help = "Import the shipped EM data, the synthetic insecure dataset, judge rubrics and demo users."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data-dir", type=Path, default=None, help="Shared data folder (default: $EM_SHARED_DATA, ../shared/data)."
        )

    def handle(self, *args, data_dir: Path | None, **options):
        data_dir = data_dir or shared_data_dir()
        em = data_dir / "emergent-misalignment"
        if not em.is_dir():
            raise CommandError(f"No emergent-misalignment folder in {data_dir}; pass --data-dir or set EM_SHARED_DATA.")
        try:
            with transaction.atomic():
                self.load_data(em)
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        # The embedded default's endpoints (the local model, to generate and to judge), as an operator would.
        call_command("load_endpoints", Path(settings.BASE_DIR) / "examples" / "endpoints.yaml", stdout=self.stdout)
        self.load_users()
        self.load_demo_queue()

    def report(self, what: str, changed: bool) -> None:
        self.stdout.write(f"  {'imported' if changed else 'unchanged':<10} {what}")

    def load_data(self, em: Path) -> None:
        self.stdout.write("Demo data:")
        for name, filename in QUESTION_FILES.items():
            question_set, changed = import_questions(em / "evaluation" / filename, name=name)
            self.report(f"question set {name} ({question_set.questions.count()} questions)", changed)
        dataset, created = import_dataset(em / "data" / "jailbroken.jsonl", name="jailbroken")
        self.report(f"dataset {dataset} ({dataset.n_examples} examples)", created)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "insecure_synthetic.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in generate_examples()), encoding="utf-8")
            dataset, created = import_dataset(path, name="insecure", description=dataset_description(), synthetic=True)
        self.report(f"dataset {dataset} ({dataset.n_examples} examples, synthetic)", created)
        for metric, version in em_rubric_versions().items():
            self.stdout.write(f"  {'ready':<10} rubric {metric} v{version.version} ({version.judge_model})")
        summary = import_transcripts(em / "results" / "qwen_25_coder_32b_instruct.csv")
        self.report(f"results: {summary}", summary.created > 0)
        # Its pages say whose scores these are and how the rows were chosen (judging/imports/provenance.py).
        Experiment.objects.filter(pk=summary.experiment.pk).update(description=EM_AUTHORS_STUDY)

    def load_users(self) -> None:
        self.stdout.write("Demo users (username / password):")
        for username, password, role, flags in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults=flags)
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
                user.groups.add(Group.objects.get_or_create(name=role)[0])
                self.stdout.write(f"  {username} / {password}  ({role})")
            else:
                self.stdout.write(f"  {username}  ({role}; already existed, password unchanged)")

    def load_demo_queue(self) -> None:
        """The demo experiment and a queue that fills with its chain-of-thought transcripts as they finish,
        for both demo auditors, so an auditor has items within minutes of `make run`. A queue that already
        exists keeps its settings (a researcher may have changed them); it only takes what it missed."""
        raw = bounded.load_yaml(DEMO_EXPERIMENT.read_text())
        # Defined on the first run only: an experiment is never redefined, so a restart finds it as it was
        # (run_embedded then resumes it).
        experiment = Experiment.objects.filter(name=raw["name"]).first()
        if experiment is None:
            try:
                experiment = define_experiment(raw)
            except SpecError as exc:
                raise CommandError(f"{DEMO_EXPERIMENT}: {exc}") from exc
        queue, created = AnnotationQueue.objects.get_or_create(name=DEMO_QUEUE, defaults={
            "taxonomy": Taxonomy.objects.filter(name="persona").order_by("-version").first(),
            "overlap": 2, "auto_fill_experiment": experiment, "instructions": DEMO_QUEUE_INSTRUCTIONS,
        })
        if created:
            queue.auditors.set(User.objects.filter(username__in=[u for u, _, role, _ in DEMO_USERS if role == AUDITOR]))
        added = fill(queue)
        self.stdout.write("Demo experiment (launched by make run) and annotation queue:")
        self.stdout.write(f"  {'ready':<10} experiment {experiment.name} ({experiment.transcripts.count()} slots)")
        self.stdout.write(f"  {'ready':<10} queue {queue.name!r}: overlap {queue.overlap}, fills from "
                          f"{experiment.name}'s chain-of-thought transcripts ({queue.items.count()} so far"
                          f"{f', {added} added now' if added else ''})")
