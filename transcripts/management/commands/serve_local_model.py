"""Run the local model server (llama.cpp with SmolLM2) in the foreground: docker-compose.yml's `model` service.

It replaces this process with the server, so the container's stop signal reaches the server itself."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from transcripts.local_model import parse_bind, server_command, server_env


class Command(BaseCommand):
    help = "Serve the local model (OpenAI-compatible, for generation and judging) on HOST:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="", metavar="HOST:PORT",
                            help="Listen address (default: LOCAL_MODEL_HOST:LOCAL_MODEL_PORT).")

    def handle(self, *args, bind: str, **options):
        try:
            host, port = parse_bind(bind)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        command = server_command(port=port, host=host)
        os.execve(command[0], command, server_env())  # noqa: S606 - our own argv, no shell
