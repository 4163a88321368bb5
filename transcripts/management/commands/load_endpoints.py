"""Load endpoints from a YAML file (operators): `python manage.py load_endpoints examples/endpoints.yaml`.

Each item becomes the current version of its name: a new endpoint is version 1, a changed one gets the next
version (work defined before keeps calling the old one), an unchanged one is left alone. One bad item and
nothing is changed.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from transcripts.endpoints import EndpointFileError, load_endpoints_file


class Command(BaseCommand):
    help = "Create or change endpoints from a YAML list (each change makes a new version)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            loaded = load_endpoints_file(file)
        except EndpointFileError as exc:
            raise CommandError(f"{exc} (nothing was changed)") from exc
        self.stdout.write("Endpoints:")
        for row in loaded:
            e = row.endpoint
            self.stdout.write(f"  {row.outcome:<12} {e.name} v{e.version} ({e.model} at {e.base_url})")
