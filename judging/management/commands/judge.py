"""Judge an experiment's finished transcripts: `python manage.py judge --experiment NAME [--rubric aligned]
[--version N] [--endpoint NAME] [--wait]`. Existing verdicts are kept (one per transcript × version)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from judging.models import JudgeScore, RubricVersion
from judging.results import judge
from judging.results.rubrics import default_versions, experiment_judging
from transcripts.models import Endpoint, Experiment, Transcript

RUBRICS = ("aligned", "coherent", "persona")


class Command(BaseCommand):
    help = "Queue judge requests for an experiment (its active rubric versions unless told otherwise)."

    def add_base_argument(self, parser, *args, **kwargs):
        # Our --version is the rubric version; Django's "program version" option is of no use here.
        if "--version" not in args:
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--experiment", required=True, help="Experiment name.")
        parser.add_argument("--rubric", choices=RUBRICS, help="Only this rubric (default: all three).")
        parser.add_argument("--version", type=int, help="Rubric version number (needs --rubric).")
        parser.add_argument(
            "--endpoint", help="Judge with the shipped prompts on this endpoint's current version (creates the "
            "rubric versions if new)."
        )
        parser.add_argument("--digitwise", action="store_true", help="With --endpoint: the judge writes one digit "
                            "per token (SmolLM2 and most local models).")
        parser.add_argument("--wait", action="store_true", help="Judge in this process until done.")

    def handle(self, *args, experiment: str, rubric: str | None, version: int | None, endpoint: str | None,
               digitwise: bool, wait: bool, **options):
        exp = Experiment.objects.filter(name=experiment).first()
        if exp is None:
            raise CommandError(f'No experiment named "{experiment}".')
        if version is not None and rubric is None:
            raise CommandError("--version needs --rubric.")
        versions = self._versions(exp, rubric, version, endpoint, digitwise)
        done = exp.transcripts.filter(status=Transcript.Status.DONE)
        queued = judge.enqueue(done, versions, retry_failed=True)
        names = ", ".join(f"{v.rubric.key} v{v.version} ({v.judge_model})" for v in versions)
        self.stdout.write(f"Queued {queued} judge requests for {done.count()} transcripts with {names}.")
        if wait:
            self._wait(exp, versions)

    def _versions(self, exp, rubric, version, endpoint, digitwise) -> list[RubricVersion]:
        keys = [rubric] if rubric else list(RUBRICS)
        if version is not None:
            found = RubricVersion.objects.filter(rubric__key=rubric, version=version).first()
            if found is None:
                raise CommandError(f"No {rubric} rubric version {version}.")
            return [found]
        if endpoint is not None:
            target = Endpoint.current(endpoint)
            if target is None:
                known = ", ".join(Endpoint.objects.filter(is_current=True).values_list("name", flat=True)) or "none"
                raise CommandError(f'No endpoint named "{endpoint}" (known: {known}); admins load endpoints.')
            chosen = default_versions(target, digitwise=digitwise)
            return [chosen[key] for key in keys]
        active = experiment_judging(exp)
        return [getattr(active, f"{key}_version") for key in keys if getattr(active, f"{key}_version")]

    def _wait(self, exp, versions) -> None:
        """Work in this process (no worker needed), then report what is still open."""
        open_rows = JudgeScore.objects.filter(
            rubric_version__in=versions, transcript__experiment=exp, status__in=["pending", "running"]
        )
        while True:
            for endpoint_id in {v.endpoint_id for v in versions if v.endpoint_id}:
                judge.work(endpoint_id, budget_seconds=10**9)
            if not open_rows.exists():
                break
            time.sleep(1)  # a worker elsewhere still holds a lease (expired ones come back through reconcile)
            judge.reconcile()
        failed = JudgeScore.objects.filter(rubric_version__in=versions, transcript__experiment=exp, status="failed")
        self.stdout.write(f"Done; {failed.count()} failed.")
