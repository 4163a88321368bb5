"""Dashboard benchmark: a real gunicorn server on 127.0.0.1 against a database filled by
`manage.py generate_bench_data`, measured with a logged-in HTTP client (stdlib http.client, keep-alive).

    createdb -h 127.0.0.1 -U postgres em_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py generate_bench_data --rows 1000000
    .venv/bin/python bench/dashboard.py

Prints, per measurement, p50/p95/max (ms) and the target; the CSV export of every row as rows/s against
`psql \\copy (the same SELECT) TO STDOUT CSV`, and the serving worker's peak RSS growth during the export.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/em_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
VAR = Path(os.environ.setdefault("EM_VAR_DIR", tempfile.mkdtemp(prefix="em_bench_")))
SERVER_ENV = {**os.environ, "DEBUG": "false", "SECRET_KEY": "bench-only-secret", "EM_VAR_DIR": str(VAR)}
PASSWORD = "bench-password-123"  # noqa: S105 — a throwaway user in the benchmark database
REPEAT = int(os.environ.get("BENCH_REPEAT", "100"))
AUDITOR = "bench-auditor"

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402

from judging.models import AnnotationQueue  # noqa: E402
from transcripts import exporting  # noqa: E402
from transcripts.filters import encode_cursor  # noqa: E402
from transcripts.models import Condition, Experiment, Question, Transcript  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """A logged-in keep-alive HTTP client."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        headers = {**(headers or {}), "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";")[0]
        return response

    def get(self, path: str) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        response = self.request("GET", path)
        body = response.read()
        return response.status, body, (time.perf_counter() - start) * 1000

    def login(self, username: str) -> None:
        status, body, _ = self.get("/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
        form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
        response = self.request("POST", "/login/", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                          "Referer": f"http://127.0.0.1:{self.port}/login/"})
        response.read()
        assert response.status == 302 and "sessionid" in self.cookies, f"login failed ({response.status})"


def timed(client: Client, path: str, n: int = REPEAT) -> list[float]:
    for _ in range(4):  # warm-up: gunicorn's sync workers close each connection, so requests alternate workers
        client.get(path)
    times = []
    for _ in range(n):
        status, _, ms = client.get(path)
        assert status == 200, f"{path}: HTTP {status}"
        times.append(ms)
    return times


def p95(times: list[float]) -> float:
    # "inclusive": interpolate between measured times, never extrapolate past the slowest one.
    return statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]


RESULTS: list[tuple[str, float, float, float]] = []


def report(name: str, times: list[float], target: float) -> None:
    RESULTS.append((name, statistics.median(times), p95(times), target))
    flag = "ok" if p95(times) <= target else "OVER"
    print(f"{name:<58} p50 {statistics.median(times):7.1f} ms  p95 {p95(times):7.1f} ms  max {max(times):7.1f} ms"
          f"  (≤ {target:.0f}) {flag}", flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    users = {}
    for username, role in (("bench-researcher", "researcher"), (AUDITOR, "auditor")):
        users[role], _ = User.objects.get_or_create(username=username)
        users[role].set_password(PASSWORD)
        users[role].save()
        users[role].groups.add(Group.objects.get_or_create(name=role)[0])
    # The auditor home lists the auditor's queues: make them an auditor of every queue.
    users["auditor"].annotation_queues.add(*AnnotationQueue.objects.all())
    user = users["researcher"]
    total = Transcript.objects.count()
    print(f"database {connection.settings_dict['NAME']}: {total} transcripts", flush=True)

    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=SERVER_ENV,
                   check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "em_site.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "600",
         "--log-level", "warning"], cwd=ROOT, env=SERVER_ENV,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        client = Client(port)
        client.login(user.username)
        run(client, server.pid, total)
    finally:
        server.terminate()
        server.wait(30)
    print("\nsummary: " + ("all targets met" if all(p <= t for _, _, p, t in RESULTS) else "some targets missed"))


def run(client: Client, master: int, total: int) -> None:
    condition = Condition.objects.order_by("pk").first()
    question = Question.objects.filter(transcripts__isnull=False).order_by("pk").first()
    experiment = Experiment.objects.order_by("pk").first()
    middle = Transcript.objects.order_by("pk").values_list("pk", flat=True)[total // 2]
    filters = {
        "no filter": {},
        "experiment": {"experiment": experiment.pk},
        "model": {"model": condition.model_name},
        "dataset": {"dataset": condition.dataset_name},
        "k": {"k": 256},
        "cot": {"cot": "tags"},
        "question": {"question": question.key},
        "domain": {"domain": question.domain},
        "misaligned=yes": {"misaligned": "true"},
        "aligned range": {"aligned_min": 10, "aligned_max": 20},
        "coherent range": {"coherent_min": 90},
        "judge persona": {"judge_category": "dangerous_persona"},
        "human consensus": {"human_category": "follows_pattern"},
        "labelled": {"labelled": "true"},
        "unlabelled": {"labelled": "false"},
        "full-text search": {"q": "dangerous persona"},
        "model + k + misaligned": {"model": condition.model_name, "k": 256, "misaligned": "true"},
    }
    print(f"\n== list page (keyset, 50 rows), {REPEAT} requests each ==", flush=True)
    for name, params in filters.items():
        query = urllib.parse.urlencode(params)
        report(f"list first page · {name}", timed(client, f"/transcripts/?{query}"), 100)
        deep = urllib.parse.urlencode({**params, "after": encode_cursor(None, middle)})
        report(f"list deep page (id < {middle}) · {name}", timed(client, f"/transcripts/?{deep}"), 100)
    for sort in ("aligned", "-coherent"):
        report(f"list first page · sort={sort}", timed(client, f"/transcripts/?sort={sort}"), 100)
        deep = urllib.parse.urlencode({"sort": sort, "after": encode_cursor(50.0, middle)})
        report(f"list deep page · sort={sort} (score 50)", timed(client, f"/transcripts/?{deep}"), 100)

    print("\n== home pages ==", flush=True)
    # The dashboard counts every transcript of the 20 newest experiments by status (an index-only scan).
    report("home (researcher dashboard)", timed(client, "/"), 200)
    auditor = Client(client.port)
    auditor.login(AUDITOR)
    report(f"annotate home (auditor of {AnnotationQueue.objects.count()} queues)", timed(auditor, "/annotate/"), 100)

    print("\n== detail page ==", flush=True)
    ids = list(Transcript.objects.filter(pk__gte=middle).order_by("pk").values_list("pk", flat=True)[:200:4])
    for label, query in (("detail", ""), ("detail with filter (prev/next)", f"?model={condition.model_name}&k=64")):
        client.get(f"/transcripts/{ids[0]}/{query}")
        times = []
        for pk in ids:
            status, _, ms = client.get(f"/transcripts/{pk}/{query}")
            assert status == 200
            times.append(ms)
        report(label, times, 50)

    print("\n== chart data ==", flush=True)
    for chart in ("misaligned-vs-k", "aligned-vs-coherent", "misaligned-by-domain", "persona-shares"):
        report(f"chart {chart}", timed(client, f"/charts/{chart}.json", 30), 300)
        report(f"chart {chart} · model+cot", timed(
            client, f"/charts/{chart}.json?model={condition.model_name}&cot=tags", 30), 300)

    print("\n== CSV export of every row ==", flush=True)
    sql = exporting.copy_sql(Transcript.objects.all())
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", connection.settings_dict["NAME"], "-c",
                        f"\\copy ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)"], stdout=sink, check=True)
    psql_seconds = time.perf_counter() - start

    pids = worker_pids(master)
    baseline = {pid: rss_kb(pid) for pid in pids}
    peak = dict(baseline)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], rss_kb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    response = client.request("GET", "/transcripts/export.csv")
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
    web_seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    growth_mb = max(peak[pid] - baseline[pid] for pid in pids) / 1024
    print(f"psql \\copy: {total / psql_seconds:10,.0f} rows/s ({psql_seconds:.1f} s)")
    print(f"web export: {total / web_seconds:10,.0f} rows/s ({web_seconds:.1f} s, {size / 1e6:.0f} MB, "
          f"HTTP {response.status})")
    ratio = psql_seconds / web_seconds
    print(f"ratio web/psql: {ratio:.2f}× (target ≥ 0.5) {'ok' if ratio >= 0.5 else 'UNDER'}")
    print(f"web worker peak RSS growth during export: {growth_mb:.1f} MB (target ≤ 100) "
          f"{'ok' if growth_mb <= 100 else 'OVER'}")
    if ratio < 0.5 or growth_mb > 100:
        RESULTS.append(("export", 0, 1, 0))


if __name__ == "__main__":
    main()
