"""Smoke test of the embedded default: SQLite + the server-less broker + a real worker process + the
local model server and the local embedding server, started by the same command `make run` uses, in a scratch
var/ directory."""

import csv
import http.cookiejar
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]


def _login(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    opener.addheaders = [("Referer", f"{base}/login/")]
    opener.open(f"{base}/login/", data.encode())
    return opener


def processes_running_in(var_dir) -> list[str]:
    """Command lines of the live processes started with EM_VAR_DIR=var_dir (children inherit it)."""
    marker = f"EM_VAR_DIR={var_dir}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        found.append(c.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_it_runs_end_to_end_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    port, model_port, embedder_port = free_port(), free_port(), free_port()
    env.update(EM_VAR_DIR=str(tmp_path), PORT=str(port), LOCAL_MODEL_PORT=str(model_port),
               LOCAL_EMBEDDER_PORT=str(embedder_port), RECONCILE_EVERY="5")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_embedded"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        # The command prints the URL and the demo logins once everything answers.
        deadline = time.monotonic() + 240
        while not any("is running at" in line for line in output):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "run_embedded exited:\n" + "".join(output)
            output.append(line)
            assert time.monotonic() < deadline, "run_embedded did not come up:\n" + "".join(output)
        text = "".join(output)
        assert f"{base}/" in text
        assert "researcher" in text and "researcher-demo" in text

        # The demo researcher sees the imported datasets and questions.
        opener = _login(base, "researcher", "researcher-demo")
        page = opener.open(f"{base}/datasets/").read().decode()
        assert "insecure" in page and "jailbroken" in page
        page = opener.open(f"{base}/questions/").read().decode()
        assert "first_plot" in page

        # A real worker on the filesystem broker generates demo transcripts with the local model.
        db = tmp_path / "db.sqlite3"

        def demo_transcripts_done() -> bool:
            with sqlite3.connect(db) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM transcripts_transcript WHERE status = 'done' AND answer != ''"
                ).fetchone()
            return row[0] >= 2

        wait_until(demo_transcripts_done, timeout=240, interval=2, message="demo transcripts from the local model")

        # The researcher exports them in every format: the export's SQL (every human judgement whole, as nested
        # JSON) runs on SQLite too.
        with sqlite3.connect(db) as conn:
            transcripts = conn.execute("SELECT count(*) FROM transcripts_transcript").fetchone()[0]
        csv_rows = list(csv.reader(io.StringIO(opener.open(f"{base}/transcripts/export.csv").read().decode())))
        assert len(csv_rows) == 1 + transcripts and csv_rows[0][:2] == ["id", "experiment"]
        records = [json.loads(line) for line in opener.open(f"{base}/transcripts/export.jsonl").read().splitlines()]
        assert len(records) == transcripts and all(r["human_judgements"] == [] for r in records)
        parquet = pq.read_table(io.BytesIO(opener.open(f"{base}/transcripts/export.parquet").read()))
        assert parquet.num_rows == transcripts

        # A report is computed by that worker, not the web process, and both read it from the database's cache
        # table: the page says "computing" until then.
        with sqlite3.connect(db) as conn:
            experiment = conn.execute("SELECT min(id) FROM transcripts_experiment").fetchone()[0]
        statistics = f"{base}/experiments/{experiment}/statistics/"
        assert 'data-state="ready"' not in opener.open(statistics).read().decode()
        wait_until(lambda: 'data-state="ready"' in opener.open(statistics).read().decode(), timeout=120,
                   interval=2, message="the statistics from the embedded worker")

        # Discovery works out of the box: the local embedder embeds the imported transcripts (answers without a
        # chain of thought) through the worker, and "more like this" lists a transcript's nearest answers.
        def embedded_answers() -> list[int]:
            with sqlite3.connect(db) as conn:
                return [row[0] for row in conn.execute(
                    "SELECT t.transcript_id FROM discovery_transcripttext t JOIN discovery_textvector v"
                    " ON v.id = t.vector_id WHERE t.kind = 'answer' AND v.status = 'done' ORDER BY 1")]

        wait_until(lambda: len(embedded_answers()) >= 20, timeout=240, interval=2,
                   message="answers embedded by the local embedder")
        like = embedded_answers()[0]
        page = opener.open(f"{base}/transcripts/?like={like}&like_n=5").read().decode()
        assert len(set(re.findall(r'href="/transcripts/(\d+)/', page)) - {str(like)}) == 5
        assert opener.open(f"{base}/transcripts/?like_text=steal+data&like_n=3").status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # Ctrl-C stops everything it started, grandchildren included: nothing answers on its ports any more.
    assert processes_running_in(tmp_path) == []
    for p in (port, model_port, embedder_port):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=2)
