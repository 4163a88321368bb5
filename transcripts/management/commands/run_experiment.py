"""Define and launch an experiment from a YAML file; with --wait, follow it to the end.

An experiment is defined once: a file naming an existing experiment is refused. `--resume` runs the existing
one again as it was defined (cancelled slots back in line; finished slots are never redone).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from em_site import bounded
from transcripts import generation
from transcripts.experiments import actions
from transcripts.experiments.estimate import estimate
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.progress import progress
from transcripts.experiments.spec import NameTaken, Spec, SpecError, parse_spec
from transcripts.experiments.status import mark_done_if_finished
from transcripts.importing import ImportFailed, read_text
from transcripts.models import Experiment


class Command(BaseCommand):
    help = "Define the experiment in FILE.yaml and start generating; --wait follows it to the end."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--resume", action="store_true",
            help="Run the existing experiment FILE names again, as it was defined: nothing is redefined.",
        )
        parser.add_argument("--wait", action="store_true", help="Show progress and exit when every slot is finished.")
        parser.add_argument(
            "--reconcile-every", type=float, default=settings.CELERY_BEAT_SCHEDULE["reconcile-slots"]["schedule"],
            help="Seconds between reconcile passes while waiting (returns expired leases, re-sends lost messages).",
        )
        parser.add_argument(
            "--timeout", type=float, default=None,
            help="With --wait: give up (exit non-zero) after this many seconds, e.g. when no worker is running.",
        )

    def handle(self, *args, file: Path, resume: bool, wait: bool, reconcile_every: float, timeout: float | None,
               **options):
        try:
            raw = bounded.load_yaml(read_text(file))
        except (OSError, ImportFailed, bounded.Refused, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        try:
            spec = parse_spec(raw)
        except SpecError as exc:
            raise CommandError(f"{file}: {exc}") from exc
        experiment = self._existing(file, spec) if resume else self._define(file, spec)
        before = progress(experiment)
        self.stdout.write(
            f"Experiment {experiment.name!r} (#{experiment.pk}): {before['total']} slots, "
            f"{before['by_status']['done']} already done."
        )
        if resume:
            actions.resume(experiment)
        else:
            actions.launch(experiment)
        if wait:
            self._wait(experiment, reconcile_every, timeout)

    def _define(self, file: Path, spec: Spec) -> Experiment:
        try:
            experiment = define_experiment(spec)
        except NameTaken as exc:
            raise CommandError(f"{file}: {exc} From the command line: `run_experiment --resume {file}`.") from exc
        for row in estimate(spec):
            self.stdout.write(
                f"{row.purpose}: {row.endpoint} ({row.model}): {row.calls} calls, ~{row.prompt_tokens:,} prompt "
                f"tokens (~{row.cached_tokens:,} cached), ≤ {row.completion_tokens:,} completion tokens, "
                f"≈ ${row.cost:.2f} (list price ${row.list_cost:.2f}"
                f"{', Batch API' if row.batch_api else ''}{f', {row.reused:,} slots reused' if row.reused else ''})"
            )
        return experiment

    def _existing(self, file: Path, spec: Spec) -> Experiment:
        """The experiment the file names. It runs as it was defined: where the file says otherwise, a warning
        names the fields (a changed definition is a new experiment, under a new name)."""
        experiment = Experiment.objects.filter(name=spec.name).first()
        if experiment is None:
            raise CommandError(f"{file}: no experiment named {spec.name!r} to resume; without --resume it is defined")
        # Compared as the spec column holds it: JSON (integer keys become strings).
        submitted = json.loads(json.dumps(spec.raw, default=str))
        changed = sorted(key for key in submitted.keys() | experiment.spec.keys()
                         if submitted.get(key) != experiment.spec.get(key))
        if changed:
            self.stderr.write(
                f"{file} differs from experiment {experiment.name!r} as defined ({', '.join(changed)}): it resumes "
                "as defined. To run the changed definition, give it a new name."
            )
        return experiment

    def _wait(self, experiment: Experiment, reconcile_every: float, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        state = progress(experiment)
        bar = tqdm(total=state["total"], initial=state["finished"], unit="slot", desc=experiment.name)
        next_reconcile = 0.0
        while True:
            if time.monotonic() >= next_reconcile:
                try:
                    generation.reconcile()
                except Exception as exc:  # noqa: BLE001 - a broker outage must not end the wait; retried later
                    self.stderr.write(f"reconcile failed (will retry): {exc}")
                next_reconcile = time.monotonic() + reconcile_every
            state = progress(experiment)
            bar.update(state["finished"] - bar.n)
            bar.set_postfix(running=state["by_status"]["running"], failed=state["by_status"]["failed"])
            experiment.refresh_from_db(fields=["status"])
            if state["remaining"] == 0 or experiment.status == Experiment.Status.CANCELLED:
                break
            if deadline is not None and time.monotonic() > deadline:
                bar.close()
                raise CommandError(
                    f"timed out after {timeout:.0f}s with {state['remaining']} slots unfinished: is a worker running?"
                )
            time.sleep(1)
        bar.close()
        mark_done_if_finished(experiment.pk)
        self._summary(experiment, state)
        if experiment.status == Experiment.Status.CANCELLED:
            raise CommandError(f"experiment {experiment.name!r} was cancelled")

    def _summary(self, experiment: Experiment, state: dict) -> None:
        counts = state["by_status"]
        self.stdout.write(f"Done: {counts['done']}  ·  failed: {counts['failed']}  ·  cancelled: {counts['cancelled']}")
        for kind, n in state["failed_by_kind"].items():
            self.stdout.write(f"  failed ({kind or 'unknown'}): {n}")
        self.stdout.write(
            f"Tokens: {state['prompt_tokens']:,} prompt, {state['completion_tokens']:,} completion"
            f"  ·  cost so far (generation and judging) ${state['cost']:.4f}"
        )
        if state["stop_reason"]:
            self.stdout.write(f"Stopped: {state['stop_reason']}")
