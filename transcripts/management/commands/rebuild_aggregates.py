"""Recount the maintained verdict counts (VerdictCount, CategoryCount) from the transcript table.

    python manage.py rebuild_aggregates                 # every experiment, one transaction each
    python manage.py rebuild_aggregates --experiment 3

The counts are kept in step as verdicts, transcripts and deletes happen (transcripts/aggregates.py); this is for
rows written around the application (SQL, generate_bench_data) and for checking.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from transcripts import aggregates
from transcripts.models import Experiment


class Command(BaseCommand):
    help = "Recount the maintained verdict counts of one experiment or of all of them from scratch."

    def add_arguments(self, parser):
        parser.add_argument("--experiment", type=int, help="Experiment id (default: every experiment).")

    def handle(self, *args, experiment: int | None, **options):
        chosen = None
        if experiment is not None:
            chosen = Experiment.objects.filter(pk=experiment).first()
            if chosen is None:
                raise CommandError(f"no experiment with id {experiment}")
        started = time.monotonic()
        groups = aggregates.rebuild(chosen)
        self.stdout.write(f"{groups} condition × question groups counted in {time.monotonic() - started:.1f} s")
