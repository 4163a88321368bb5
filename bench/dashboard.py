"""Dashboard benchmark: a real gunicorn server on 127.0.0.1 against a database filled by
`manage.py generate_bench_data`, measured with a logged-in HTTP client (stdlib http.client, keep-alive).

    createdb -h 127.0.0.1 -U postgres em_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py generate_bench_data --rows 1000000
    .venv/bin/python bench/dashboard.py

Prints, per measurement, p50/p95/max (ms) and the target; the CSV export of every row as rows/s against
`psql \\copy (the same SELECT) TO STDOUT CSV`, and the serving worker's peak RSS growth during the export.

Then every other page, partial and API route a researcher or auditor can open, found by walking the URLconf
(so a page added later gets a cell without editing this file): each is filled with ids from the bench
database and measured BENCH_PAGE_REPEAT (20) times. A route that answers 404 here is reported as MISSING,
one that answers 405 as POST-only; routes that change data are never requested (ACTIONS).

    BENCH_BASELINE=<git revision> .venv/bin/python bench/dashboard.py

also serves that revision (exported with `git archive`) from a second gunicorn against the same database and
measures every page cell on both, requests alternating, so that before/after ratios come from one run.
BENCH_ONLY=pages skips the list, detail, chart and export sections; BENCH_ONLY=export runs the export alone.

A Celery worker runs beside the server, as in a deployment: pages whose reports are computed in the background
(judging/reports.py) are first asked for until the worker has filled them (the time that took is printed), then
measured as a researcher reads them.
"""

from __future__ import annotations

import http.client
import itertools
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

from django.apps import apps  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from browse import charts, export_copy  # noqa: E402
from judging.imports import uploads  # noqa: E402
from judging.models import AnnotationQueue, JudgeScore, Label, QueueItem, RubricVersion  # noqa: E402
from transcripts.models import Condition, Dataset, Experiment, Question, QuestionSet, Transcript  # noqa: E402
from transcripts.paging import encode_cursor  # noqa: E402


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

    def twin(self, port: int) -> Client:
        """A client of another server with this one's cookies (the same session)."""
        other = Client(port)
        other.cookies = dict(self.cookies)
        return other

    def claim(self, queue_id: int) -> str:
        """The token of the auditor's open claim in the queue: the one they hold, or a new one claimed with the
        page's button (a CSRF-checked POST)."""
        url = f"/annotate/{queue_id}/next/"
        response = self.request("GET", url)
        body = response.read()
        if response.status != 302:
            token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
            form = urllib.parse.urlencode({"csrfmiddlewaretoken": token})
            response = self.request("POST", url, form, {"Content-Type": "application/x-www-form-urlencoded",
                                                        "Referer": f"http://127.0.0.1:{self.port}{url}"})
            response.read()
        assert response.status == 302, f"{url}: HTTP {response.status}, no item to claim"
        return response.getheader("Location").rstrip("/").split("/")[-1]

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


def start_worker() -> subprocess.Popen:
    """A Celery worker for the reports the pages ask for (judging/reports.py), on the same broker and cache as the
    server (the environment's, by default the filesystem broker under EM_VAR_DIR and the database cache)."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "em_site", "worker", "-P", "threads", "-c", "2", "-l", "warning"],
        cwd=ROOT, env=SERVER_ENV,
    )


def start_server(code: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn with 2 sync workers serving the code at `code`, once it accepts connections."""
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=code, env=SERVER_ENV,
                   check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "em_site.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "600",
         "--log-level", "warning"], cwd=code, env=SERVER_ENV,
    )
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return server, port


def export_revision(revision: str) -> Path:
    """The files of a git revision in a temporary directory (git archive: the checkout is not touched)."""
    target = Path(tempfile.mkdtemp(prefix="em_baseline_"))
    # BENCH_GIT: the checkout to export from, when this script itself runs from an exported tree.
    repository = os.environ.get("BENCH_GIT", str(ROOT))
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=repository, capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main() -> None:
    users = {}
    for username, role in (("bench-researcher", "researcher"), (AUDITOR, "auditor")):
        users[role], _ = User.objects.get_or_create(username=username)
        users[role].set_password(PASSWORD)
        users[role].save()
        users[role].groups.add(Group.objects.get_or_create(name=role)[0])
    # The auditor home lists the auditor's queues: make them an auditor of every queue.
    users["auditor"].annotation_queues.add(*AnnotationQueue.objects.all())
    total = Transcript.objects.count()
    print(f"database {connection.settings_dict['NAME']}: {total} transcripts", flush=True)

    servers = []
    try:
        server, port = start_server(ROOT)
        servers += [server, start_worker()]
        clients = {"researcher": Client(port), "auditor": Client(port)}
        for role, client in clients.items():
            client.login(users[role].username)
        baseline = None
        if revision := os.environ.get("BENCH_BASELINE"):
            old_server, old_port = start_server(export_revision(revision))
            servers.append(old_server)
            # Sessions live in the database, so the same cookies are logged in on the baseline server.
            baseline = {role: client.twin(old_port) for role, client in clients.items()}
            print(f"baseline: {revision} on port {old_port}", flush=True)
        only = os.environ.get("BENCH_ONLY")
        if only == "export":
            export(clients["researcher"], server.pid, total)
        else:
            if only != "pages":
                run(clients["researcher"], server.pid, total)
            run_pages(clients, baseline, total)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    print("\nsummary: " + ("all targets met" if all(p <= t for _, _, p, t in RESULTS) else "some targets missed"))


def list_filters(condition: Condition, question: Question) -> dict[str, dict]:
    """The list page's filter cells (name → query parameters): each filter alone, and one combination."""
    return {
        "no filter": {},
        "experiment": {"experiment": condition.experiment_id},
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


def run(client: Client, master: int, total: int) -> None:
    condition = Condition.objects.order_by("pk").first()
    question = Question.objects.filter(transcripts__isnull=False).order_by("pk").first()
    middle = Transcript.objects.order_by("pk").values_list("pk", flat=True)[total // 2]
    filters = list_filters(condition, question)
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
    for chart in charts.CHARTS:
        report(f"chart {chart}", timed(client, f"/charts/{chart}.json", 30), 300)
        report(f"chart {chart} · model+cot", timed(
            client, f"/charts/{chart}.json?model={condition.model_name}&cot=tags", 30), 300)

    export(client, master, total)


def export(client: Client, master: int, total: int) -> None:
    print("\n== CSV export of every row ==", flush=True)
    sql = export_copy.copy_sql(Transcript.objects.all())
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
    # Issue #17: at least half psql's rate at 1M rows, 0.8 of it at 10M.
    target = 0.8 if total >= 10_000_000 else 0.5
    print(f"ratio web/psql: {ratio:.2f}× (target ≥ {target}) {'ok' if ratio >= target else 'UNDER'}")
    print(f"web worker peak RSS growth during export: {growth_mb:.1f} MB (target ≤ 100) "
          f"{'ok' if growth_mb <= 100 else 'OVER'}")
    if ratio < target or growth_mb > 100:
        RESULTS.append(("export", 0, 1, 0))


# Routes that change data (POST only): never requested. Routes measured in the sections above (by route).
ACTIONS = {
    "login", "logout", "api-token", "experiment-cancel", "experiment-resume", "experiment-retry-failed",
    "experiment-launch", "experiment-rejudge", "experiment-judging-activate", "annotate-undo", "annotate-skip",
    "labels-import", "gold-run",
}
# The API export streams through the same browse.views.export_response as transcripts/export.csv.
ELSEWHERE = {"transcripts/", "transcripts/<int:pk>/", "transcripts/export.<str:fmt>", "charts/<slug:name>.json",
             "api/transcripts/export/"}
# The publication figure is drawn by matplotlib at each request (a PNG at 200 dpi is most of its time).
PAGE_TARGET_MS, TARGETS_MS = 300, {"queue-agreement": 1000, "chart-figure": 600, "chart-figure-file": 1500}
PAGE_REPEAT = int(os.environ.get("BENCH_PAGE_REPEAT", "20"))
# Files whose length grows with the data (a queue's labels CSV): measured as rows per second, not one page's time.
DOWNLOADS, DOWNLOAD_ROWS_PER_SECOND = {"labels-export"}, 20_000
SLOW_FACTOR = 10  # a first request over 10× its target is reported once, not repeated
PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


def routes(patterns=None, prefix: str = "") -> list[tuple[str, str]]:
    """(route, name) of every URL pattern, Django admin left out (staff only, not a researcher page)."""
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if route.startswith("admin/"):
            continue
        if hasattr(pattern, "url_patterns"):
            found += routes(pattern.url_patterns, route)
        else:
            found.append((route.replace("^", "").replace("$", ""), pattern.name))
    return found


def fill(route: str, values: dict) -> list[str] | str:
    """The concrete paths of a route: each parameter takes the value(s) named by the path segment before it
    and its own name, e.g. ("queues", "pk"). A parameter without a value returns its name (a reason)."""
    paths = [""]
    position = 0
    for match in PARAMETER.finditer(route):
        name = match.group(1) or match.group(2)
        segment = route[:match.start()].rstrip("/").split("/")[-1]
        key = (route.split("/")[0], segment, name)
        found = values.get(key, values.get((segment, name)))
        if found is None:
            return f"no bench value for {segment}/<{name}>"
        literal = route[position:match.start()]
        choices = found if isinstance(found, list) else [found]
        paths = [f"{path}{literal}{value}" for path in paths for value in choices]
        position = match.end()
    return ["/" + path + route[position:] for path in paths]


def page_values(clients: dict[str, Client]) -> tuple[dict, dict]:
    """Ids of the bench database for every route parameter, and extra query strings per route name."""
    experiment = Experiment.objects.order_by("pk").first()
    other = Experiment.objects.exclude(pk=experiment.pk).order_by("pk").first()
    queue = AnnotationQueue.objects.get(name="bench-queue")
    open_queue = AnnotationQueue.objects.get(name="bench-open-queue")
    item = QueueItem.objects.filter(queue=queue).order_by("position").first()
    condition = Condition.objects.filter(experiment=experiment).order_by("pk").first()
    second = Condition.objects.filter(experiment=experiment).order_by("pk")[1]
    versions = {rv.rubric.key: rv.pk for rv in RubricVersion.objects.select_related("rubric")}
    # The annotate item page shows an item claimed by the auditor: claim one (POST, as the page's button does).
    token = clients["auditor"].claim(open_queue.pk)
    values = {
        ("experiments", "pk"): experiment.pk, ("queues", "pk"): queue.pk, ("annotate", "queue_id"): open_queue.pk,
        ("annotate", "items", "token"): token, ("queues", "items", "token"): str(item.token),
        ("datasets", "pk"): Dataset.objects.order_by("pk").first().pk,
        ("questions", "pk"): QuestionSet.objects.order_by("pk").first().pk,
        ("taxonomies", "pk"): queue.taxonomy_id, ("conditions", "pk"): condition.pk,
        ("transcripts", "pk"): item.transcript_id, ("scores", "pk"): JudgeScore.objects.order_by("pk").first().pk,
        ("labels", "pk"): Label.objects.order_by("pk").first().pk,
        ("charts", "fmt"): ["svg", "pdf", "png"],
        ("judges", "score"): ["aligned", "coherent"], ("calibration", "name"): ["roc", "pr"],
        ("calibration", "queue"): queue.pk,
    }
    # An upload waiting for its import (no worker runs here, so it stays queued): the progress page's state.
    values[("imports", "job")] = uploads.save_upload(SimpleUploadedFile("bench.jsonl", b"{}\n"))
    if gold := apps.get_model("judging", "GoldSuite").objects.order_by("pk").first():
        values[("gold", "pk")] = gold.pk
    pair = f"a-aligned={versions['aligned']}&a-coherent={versions['coherent']}" \
           f"&b-aligned={versions['aligned']}&b-coherent={versions['coherent']}"
    category = item.transcript.judge_category or "dangerous_persona"
    variants = {
        "experiment-results": ["", "htmx"],
        "experiment-compare": ["", f"a={condition.pk}&b={second.pk}", f"other={other.pk}"],
        "judge-vs-judge": ["", pair],
        "judge-vs-judge-scatter": [pair],
        "queue-items": ["", f"judge={category}", f"human={category}", f"auditor=bench-auditor-1&label={category}"],
        "queue-calibration-cell": ["judge=1&human=1"],
        "question-results": ["", f"experiment={experiment.pk}"],
    }
    return values, variants


def measure_download(label: str, client: Client, path: str) -> None:
    """Three downloads of the file: rows (lines after the header) per second, the median, against its target."""
    rates = []
    for _ in range(3):
        status, body, ms = fetch(client, path, {})
        assert status == 200, f"{path}: HTTP {status}"
        rows = body.count(b"\n") - 1
        rates.append(rows / (ms / 1000))
    rate = statistics.median(rates)
    ok = rate >= DOWNLOAD_ROWS_PER_SECOND
    print(f"{label:<58} {rows:,} rows: {rate:,.0f} rows/s (≥ {DOWNLOAD_ROWS_PER_SECOND:,}) {'ok' if ok else 'UNDER'}",
          flush=True)
    if not ok:
        RESULTS.append((label, 0, 1, 0))


def interleaved(client: Client, baseline: Client | None, path: str, headers: dict,
                target: float) -> tuple[list, list | None]:
    """PAGE_REPEAT timed requests on the server (and on the baseline server, alternating), after warm-up. A
    baseline whose first request takes over SLOW_FACTOR × the target is measured by that request alone."""
    def one(c: Client) -> float:
        status, ms = probe(c, path, headers)
        assert status in (200, 302), f"{c.port} {path}: HTTP {status}"
        return ms

    servers = [client]
    before = None
    if baseline is not None:
        probe(baseline, path, headers)  # its worker's first request of this page (imports, caches) is not its cost
        status, first = probe(baseline, path, headers)
        if status not in (200, 302):
            print(f"{'':<58} baseline: HTTP {status} (the page did not exist or failed)", flush=True)
        elif first > SLOW_FACTOR * target:
            before = [first]
        else:
            servers.append(baseline)
    for c in servers:
        for _ in range(2):
            one(c)
    times: list[list[float]] = [[] for _ in servers]
    for _ in range(PAGE_REPEAT):
        for i, c in enumerate(servers):
            times[i].append(one(c))
    return times[0], (times[1] if len(servers) > 1 else before)


def probe(client: Client, path: str, headers: dict) -> tuple[int, float]:
    """One request: its status and time (ms)."""
    status, _, ms = fetch(client, path, headers)
    return status, ms


def fetch(client: Client, path: str, headers: dict) -> tuple[int, bytes, float]:
    """One request: its status, body and time (ms)."""
    start = time.perf_counter()
    response = client.request("GET", path, headers=headers)
    body = response.read()
    return response.status, body, (time.perf_counter() - start) * 1000


# A report the page shows that the worker has not finished (judging/reports.py, report_state.html).
PENDING = (b'data-state="computing"', b'data-state="updating"')
SETTLE_SECONDS = int(os.environ.get("BENCH_SETTLE", "600"))


def settle(client: Client, path: str, headers: dict) -> float | None:
    """Ask for the page until it shows no report still computing or updating (the bench's Celery worker computes
    them, as a deployment's would); returns the seconds that took, None when the page shows none."""
    start = time.perf_counter()
    for attempt in itertools.count():
        status, body, _ = fetch(client, path, headers)
        if status != 200 or not any(marker in body for marker in PENDING):
            return time.perf_counter() - start if attempt else None
        if time.perf_counter() - start > SETTLE_SECONDS:
            print(f"{'':<58} still computing after {SETTLE_SECONDS} s; measured as it is", flush=True)
            return None
        time.sleep(1)


def run_pages(clients: dict[str, Client], baseline: dict[str, Client] | None, total: int) -> None:
    print(f"\n== every other page, partial and API route: {PAGE_REPEAT} requests each ==", flush=True)
    values, variants = page_values(clients)
    missing = []
    for route, name in routes():
        if name in ACTIONS or route in ELSEWHERE:
            continue
        paths = fill(route, values)
        if isinstance(paths, str):
            missing.append(f"{route} ({name}): {paths}")
            continue
        role = "auditor" if route.startswith("annotate/") else "researcher"
        for path in paths:
            for variant in variants.get(name, [""]):
                headers = {"HX-Request": "true"} if variant == "htmx" else {}
                query = "" if variant in ("", "htmx") else f"?{variant}"
                label = f"{name} {path}{query}{' (htmx)' if headers else ''}"
                probe(clients[role], path + query, headers)  # warm-up: a worker's first request of the page
                if (waited := settle(clients[role], path + query, headers)) is not None:
                    print(f"{label:<58} its reports computed by the worker in {waited:.1f} s", flush=True)
                status, first_ms = probe(clients[role], path + query, headers)
                if status == 405:
                    print(f"{label:<58} POST only: no cell", flush=True)
                    continue
                if status not in (200, 302):
                    missing.append(f"{label}: HTTP {status}")
                    continue
                if name in DOWNLOADS:
                    measure_download(label, clients[role], path + query)
                    continue
                target = TARGETS_MS.get(name, PAGE_TARGET_MS)
                if first_ms > SLOW_FACTOR * target:  # not repeated: 20 requests of a minute would take all day
                    report(f"{label} (1 request)", [first_ms], target)
                    continue
                mine, before = interleaved(clients[role], baseline and baseline[role], path + query, headers, target)
                report(label, mine, target)
                if before is not None:
                    print(f"{'':<58} baseline p50 {statistics.median(before):7.1f} ms  p95 {p95(before):7.1f} ms  "
                          f"→ {p95(before) / p95(mine):5.1f}× faster", flush=True)
    for line in missing:
        print(f"MISSING: {line}", flush=True)
    if missing:
        RESULTS.append(("missing cells", 0, 1, 0))


if __name__ == "__main__":
    main()
