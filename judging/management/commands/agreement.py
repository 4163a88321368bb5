"""Agreement statistics for a queue, or for any long-format CSV (`item,annotator,label`)."""

import csv
import json

from django.core.management.base import BaseCommand, CommandError

from judging.annotation import agreement
from judging.annotation.queue_stats import queue_agreement
from judging.models import AnnotationQueue


class Command(BaseCommand):
    help = "Print percent agreement, Cohen's κ per pair, Fleiss' κ and Krippendorff's α (nominal)."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--queue", help="Annotation queue name.")
        source.add_argument("--csv", help="Long-format CSV with header item,annotator,label; empty label = missing.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--bootstrap", type=int, default=1000, help="Resamples for the α interval.")

    def handle(self, *args, **options):
        if options["queue"]:
            queue = AnnotationQueue.objects.filter(name=options["queue"]).first()
            if queue is None:
                raise CommandError(f"No annotation queue named {options['queue']!r}.")
            result = queue_agreement(queue, n_boot=options["bootstrap"])
        else:
            result = agreement.compute(self._read_csv(options["csv"]), n_boot=options["bootstrap"])
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
            return
        for key in ("n_items", "n_annotators", "n_labels", "percent_agreement", "fleiss_kappa", "krippendorff_alpha",
                    "krippendorff_alpha_ci95"):
            self.stdout.write(f"{key}: {result[key]}")
        for pair in result["cohen_kappa"]:
            self.stdout.write(f"cohen_kappa {pair['a']}–{pair['b']}: {pair['kappa']} ({pair['n_items']} items)")
        for note in result["notes"]:
            self.stdout.write(f"note: {note}")

    def _read_csv(self, path: str) -> list[tuple[str, str, str]]:
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                missing = {"item", "annotator", "label"} - set(reader.fieldnames or [])
                if missing:
                    raise CommandError(f"{path}: missing column(s) {', '.join(sorted(missing))}.")
                return [(row["item"], row["annotator"], row["label"]) for row in reader]
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
