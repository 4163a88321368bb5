"""Run the whole embedded default: migrate, load demo data, start the local model server, the local embedding
server, a Celery worker (with the reconciler's beat) and the web server, launch the demo experiment, and wait.

Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from judging.management.commands.load_demo import DEMO_EXPERIMENT, DEMO_USERS
from transcripts import engine
from transcripts.endpoints import LOCAL_EMBEDDER
from transcripts.local_model import server_command, server_env, wait_for_server

# How long Ctrl-C waits for in-flight work before killing. A request the local model is still generating
# keeps both the model server and the worker's warm shutdown waiting on each other, for minutes on a busy
# machine; killing is safe because the database hands an interrupted slot out again once its lease ends.
STOP_GRACE_SECONDS = 10


def exit_reason(name: str, returncode: int, logs: Path) -> str:
    """One line saying how a child process ended and, where we know it, what to do."""
    if returncode == -signal.SIGILL:
        return (f"{name} died with SIGILL (illegal instruction): its llama-cpp-python was compiled for another "
                "CPU's instructions. Fix: `rm -rf .venv ~/.cache/em-audit && make run` rebuilds the portable "
                "(x86-64-v3) wheel.")
    if returncode < 0:
        return f"{name} was killed by {signal.Signals(-returncode).name}; see {logs}/{name}.log."
    return f"{name} exited with code {returncode}; see {logs}/{name}.log."


class Command(BaseCommand):
    help = "Start the embedded EM Audit (web + worker + local model) with demo data."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-demo-experiment", action="store_true", help="Don't launch examples/demo.yaml.")
        parser.add_argument(
            "--exit-when-ready", action="store_true", help="Start everything, check it answers, then stop (smoke test)."
        )

    def handle(self, *args, host: str, port: int, no_demo_experiment: bool, exit_when_ready: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_demo")
        # Nothing else works on this database: what a stopped run held goes back in line at once.
        for job in engine.jobs():
            engine.release_all(job)
        procs: list[tuple[str, subprocess.Popen]] = []
        logs = Path(settings.VAR_DIR) / "logs"
        logs.mkdir(exist_ok=True)

        def start(name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
            # A session of its own: the terminal's Ctrl-C reaches only this command, which stops the children
            # itself, and a kill reaches a child's own children too (gunicorn's workers, Celery's beat).
            proc = subprocess.Popen(cmd, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            procs.append((name, proc))
            return proc

        def stop_all():
            for _name, proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for _name, proc in procs:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):  # it may have exited a moment ago
                        os.killpg(proc.pid, signal.SIGKILL)  # the child and its own children
                    proc.wait()

        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            model = start("local-model", server_command(), env=server_env())
            # Discovery's embedder ("more like this", clusters; docs/discovery.md), by its command's name: the
            # discovery app sits above judging and is not imported here.
            embedder = start("local-embedder", [sys.executable, "manage.py", "serve_local_embedder"])
            worker = start(
                "worker",
                [sys.executable, "-m", "celery", "-A", "em_site", "worker", "-B", "-P", "threads", "-c", "16",
                 "--without-gossip", "--without-mingle", "-l", "INFO",
                 "-s", str(Path(settings.VAR_DIR) / "celerybeat-schedule")],
            )
            web = start(
                "web",
                [sys.executable, "-m", "gunicorn", "em_site.wsgi", "--bind", f"{host}:{port}", "--workers", "2",
                 "--threads", "4", "--access-logfile", "-"],
            )
            self.stdout.write("Starting the local model server (SmolLM2-135M-Instruct)…")
            try:
                wait_for_server(f"{settings.LOCAL_MODEL_BASE_URL}/models", model, "The local model server")
                wait_for_server(f"{settings.LOCAL_EMBEDDER_BASE_URL}/models", embedder, "The local embedding server")
                wait_for_server(f"http://{host}:{port}/login/", web, "The web server")
            except RuntimeError as exc:
                dead = next(((name, proc) for name, proc in procs if proc.poll() is not None), None)
                raise CommandError(exit_reason(dead[0], dead[1].returncode, logs) if dead else str(exc)) from exc
            if worker.poll() is not None:
                raise CommandError("The Celery worker exited; see var/logs/worker.log.")
            # It embeds unless an admin chose another embedder; what is finished and not embedded yet is queued.
            call_command("use_embedding_endpoint", LOCAL_EMBEDDER, if_unset=True, stdout=self.stdout)
            if not no_demo_experiment and DEMO_EXPERIMENT.exists():
                # load_demo defined it (on the first start): launch it, or on a restart resume it as it was.
                call_command("run_experiment", str(DEMO_EXPERIMENT), resume=True)
            self.stdout.write(self.style.SUCCESS(f"\nEM Audit is running at http://{host}:{port}/"))
            self.stdout.write("Demo logins (unless you changed their passwords):")
            for username, password, role, _flags in DEMO_USERS:
                self.stdout.write(f"  {username:<12} {password:<18} {role}")
            self.stdout.write(f"Logs: {logs}/  ·  Ctrl-C stops web, worker and local models.\n")
            if exit_when_ready:
                return
            while all(proc.poll() is None for _name, proc in procs):
                time.sleep(1)
            raise CommandError(" ".join(
                exit_reason(name, proc.returncode, logs) for name, proc in procs if proc.poll() is not None
            ))
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            stop_all()
