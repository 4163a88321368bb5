"""Run the local embedding server (all-MiniLM-L6-v2, discovery.local_embedder) in the foreground: `make run`'s
embedder and docker-compose.yml's `embedder` service.

It replaces this process with the server (plain Python and numpy, no Django), so the container's stop signal
reaches the server itself and it starts in a second."""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from transcripts.local_model import parse_bind


def server_command(host: str | None = None, port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "discovery.local_embedder",
            "--host", host or settings.LOCAL_EMBEDDER_HOST, "--port", str(port or settings.LOCAL_EMBEDDER_PORT),
            "--cache", str(settings.VAR_DIR / "models")]


class Command(BaseCommand):
    help = "Serve the local embedding model (OpenAI-compatible /v1/embeddings) on HOST:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="", metavar="HOST:PORT",
                            help="Listen address (default: LOCAL_EMBEDDER_HOST:LOCAL_EMBEDDER_PORT).")

    def handle(self, *args, bind: str, **options):
        try:
            host, port = parse_bind(bind)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        command = server_command(host, port)
        os.execv(command[0], command)  # noqa: S606 - our own argv, no shell
