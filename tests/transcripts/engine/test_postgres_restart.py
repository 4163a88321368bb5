"""PostgreSQL itself restarts (crash-stop, then start) in the middle of a run with judging. The worker process
keeps running and reconnects on its own, and every slot and every judge score is written exactly once.

The test runs a PostgreSQL cluster of its own on its own port, with the machine's PostgreSQL binaries: stopping
the machine's server would break whatever the other test process is doing. Everything that touches that
cluster (setup, launch, the worker) runs as a separate process pointed at it by DATABASE_URL."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import ROOT, free_port, wait_until
from tests.stub_openai import Reply, StubOpenAI, completion

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

PG_BIN = Path("/usr/lib/postgresql") / max(os.listdir("/usr/lib/postgresql"), key=int) / "bin"
SLOTS = 2 * 10 * 5  # k × questions × samples
SCORES = 2 * SLOTS  # aligned and coherent (no chain of thought, so no persona verdict)


class PrivatePostgres:
    """initdb + pg_ctl on a free port, as the postgres user when the tests run as root (initdb refuses root)."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.data = directory / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/em"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "em")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a crash would: every connection is cut, nothing is shut down cleanly."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def count(self, sql: str) -> int:
        with psycopg.connect(self.url, connect_timeout=5) as connection:
            return connection.execute(sql).fetchone()[0]


@pytest.fixture
def private_postgres():
    # Not under pytest's tmp_path: the postgres user cannot enter root's private temporary folders.
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="em-test-pg-")))
    try:
        yield server.init()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.crash()
        shutil.rmtree(server.directory, ignore_errors=True)


def numbered_reply(request, n):
    """Generation gets `reply n`, the judge `verdict n` with logprobs: every stored result names its request."""
    if request.get("logprobs"):
        return Reply(body=completion(f"verdict {n}", top_logprobs={"10": 0.0}), delay=0.1)
    return Reply(body=completion(f"reply {n}"), delay=0.1)


SETUP = """
from tests.builders import make_dataset, make_endpoint, make_questions
make_dataset(n=20)
make_questions(n=10)
make_endpoint("{url}", max_concurrency=8, timeout_seconds=1)
make_endpoint("{url}", name="stub-judge", max_concurrency=8, timeout_seconds=1)
"""


def test_workers_reconnect_after_postgres_restarts_and_write_everything_once(
    tmp_path, private_postgres, celery_worker_factory, redis_broker_url
):
    env = {**os.environ, "DATABASE_URL": private_postgres.url, "CELERY_BROKER_URL": redis_broker_url,
           "SLOT_LEASE_SECONDS": "3", "GENERATION_BACKOFF_SECONDS": "0.05", "RECONCILE_EVERY": "1",
           "LOG_LEVEL": "WARNING", "EM_VAR_DIR": str(tmp_path)}

    def manage(*args: str, timeout: float = 120) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=timeout)

    with StubOpenAI(numbered_reply) as stub:
        manage("migrate", "--noinput", "-v", "0")
        manage("shell", "-c", SETUP.format(url=stub.base_url))
        spec = {"name": "pg-restart", "endpoints": ["stub"], "judge": "stub-judge", "datasets": ["insecure"],
                "questions": "first_plot", "k": [0, 4], "samples": 5, "max_tokens": 20}
        path = tmp_path / "pg-restart.yaml"
        path.write_text(yaml.safe_dump(spec))
        worker = celery_worker_factory(concurrency=8, beat=True, env=env)
        manage("run_experiment", str(path))
        wait_until(lambda: private_postgres.count("select count(*) from judging_judgescore where status='done'") >= 20,
                   timeout=120, interval=0.3, message="generation and judging under way")
        assert private_postgres.count("select count(*) from judging_judgescore where status='done'") < SCORES
        private_postgres.crash()
        assert worker.proc.poll() is None
        private_postgres.start()
        # No restart of the worker: its threads reconnect, and beat's reconciler hands out what was cut off.
        wait_until(
            lambda: private_postgres.count("select count(*) from judging_judgescore where status='done'") == SCORES,
            timeout=240, interval=1, message="every slot generated and judged",
        )
        assert worker.proc.poll() is None, "the worker should reconnect, not die"

    with psycopg.connect(private_postgres.url) as connection:
        slots = connection.execute("select status, answer, seed from transcripts_transcript").fetchall()
        scores = connection.execute("select status, raw_text from judging_judgescore").fetchall()
    assert len(slots) == SLOTS and {s[0] for s in slots} == {"done"}
    assert len({s[1] for s in slots}) == SLOTS, "two slots share a reply: a result was written twice"
    for _status, answer, seed in slots:
        assert stub.requests[int(answer.removeprefix("reply ")) - 1]["seed"] == seed
    assert len(scores) == SCORES and {s[0] for s in scores} == {"done"}
    assert len({s[1] for s in scores}) == SCORES, "two scores share a reply: a verdict was written twice"
