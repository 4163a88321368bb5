"""Choose the endpoint that embeds (what an admin does in Django admin, Discovery → Embedding configs), and embed
the finished transcripts that have no vector from it yet (imported ones, or ones finished before).

`make run` calls it with `--if-unset` for the embedded default's `local-embedder`: on a fresh clone "more like
this" and clusters work at once, and an admin's own choice is never overwritten by a restart."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from discovery import embedding
from discovery.models import EmbeddingConfig
from transcripts.models import Endpoint, Transcript


class Command(BaseCommand):
    help = "Make NAME the embedding endpoint and embed the finished transcripts it has not embedded yet."

    def add_arguments(self, parser):
        parser.add_argument("name", help="An endpoint's name (its current version embeds).")
        parser.add_argument("--if-unset", action="store_true",
                            help="Leave an embedding endpoint already chosen as it is (then embed with that one).")

    def handle(self, *args, name: str, if_unset: bool, **options):
        if Endpoint.current(name) is None:
            raise CommandError(f"No endpoint named {name!r}: load it first (manage.py load_endpoints).")
        chosen = embedding.config()
        if chosen is None or (chosen.endpoint_name != name and not if_unset):
            EmbeddingConfig.objects.filter(active=True).update(active=False)
            EmbeddingConfig.objects.create(endpoint_name=name)
        endpoint = embedding.current_endpoint()
        added = embedding.enqueue_all(Transcript.objects.filter(status=Transcript.Status.DONE), endpoint)
        self.stdout.write(f"Embeddings: {endpoint.name} v{endpoint.version}; {added} texts queued.")
