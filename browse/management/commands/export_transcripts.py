"""Export transcripts matching the browser's filters as CSV or JSON Lines, streamed to a file.

    python manage.py export_transcripts --model gpt-4o --k 64 -o out.csv
    python manage.py export_transcripts --query "experiment=3&misaligned=true" --format jsonl -o out.jsonl
"""

from __future__ import annotations

import sys

import django_filters
from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from browse import exporting
from browse.filters import TranscriptFilter, filter_transcripts


class Command(BaseCommand):
    help = "Export transcripts matching the browser's filters as CSV or JSON Lines."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-", help="File to write ('-' for standard output).")
        parser.add_argument(
            "--format", choices=sorted(exporting.FORMATS), help="Default: from the file suffix, else csv."
        )
        parser.add_argument("--query", default="", help='A browser querystring, e.g. "model=x&k=64&misaligned=true".')
        for name, field in TranscriptFilter.base_filters.items():
            # Range filters take two arguments (--aligned-min/--aligned-max), like the querystring.
            names = [f"{name}_min", f"{name}_max"] if isinstance(field, django_filters.RangeFilter) else [name]
            for option in names:
                parser.add_argument(f"--{option.replace('_', '-')}", dest=f"filter_{option}", help=f"Filter: {option}.")

    def handle(self, *args, output: str, format: str | None, query: str, **options):
        params = QueryDict(query, mutable=True)
        for key, value in options.items():
            if key.startswith("filter_") and value is not None:
                params[key.removeprefix("filter_")] = value
        filterset = filter_transcripts(params)
        if not filterset.is_valid():
            raise CommandError(f"Invalid filter: {filterset.errors.as_text()}")
        fmt = format or ("jsonl" if output.endswith((".jsonl", ".ndjson")) else "csv")
        _, iterator = exporting.FORMATS[fmt]
        stream = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115 — closed below
        try:
            for block in iterator(filterset.qs):
                stream.write(block)
        finally:
            if stream is not sys.stdout.buffer:
                stream.close()
