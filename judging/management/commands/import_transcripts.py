import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from judging.imports.importing import import_transcripts
from judging.imports.staging import ImportProgress
from transcripts.importing import ImportFailed


class Command(BaseCommand):
    help = "Import transcripts produced elsewhere: our JSONL format or an EM results CSV (see docs/importing.md)."
    # The system checks import every view (and with them pandas, statsmodels, scikit-learn, plotly): 180 MB
    # of the command's memory for nothing it uses. `manage.py check` and every server still run them.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, file: Path, no_progress: bool, **options):
        bar = None

        def report(state: ImportProgress) -> None:
            nonlocal bar
            if bar is None:
                # On stderr, like every progress bar, so that stdout stays the summary alone (the raw stream:
                # the command's wrapper ends every write with a newline, which would break the bar's redraws).
                bar = tqdm(total=state.bytes_total, unit="B", unit_scale=True, desc=state.file, file=sys.stderr)
            bar.update(state.bytes_read - bar.n)
            bar.set_postfix(rows=f"{state.rows:,}", refresh=False)
            if state.writing:
                bar.set_description(f"{state.file}: writing")

        try:
            summary = import_transcripts(file, progress=None if no_progress else report)
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        self.stdout.write(str(summary))
