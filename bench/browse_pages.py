"""Browse pages before/after in one run: the transcript list (first and deep keyset page of every filter of
bench/dashboard.py), the transcript page (with and without a filter: previous/next), and the queue items page of
the bench queue and of the largest queue (first page, a deep page, the judge and consensus filters), against the
bench database of `generate_bench_data` (see bench/dashboard.py).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_pages
    BENCH_BASELINE=b25fe1d .venv/bin/python bench/browse_pages.py

Serves this checkout and the baseline revision from two gunicorn servers (2 sync workers each) on the same
database and requests each cell on both, alternating, BENCH_REPEAT (20) times after warm-up (the transcript page:
once per transcript of 50, as bench/dashboard.py does). Prints p50/p95 of both and the ratio of the p95s.
A deep queue page is the page after the middle of the queue; the baseline has no pages and shows its first 500.
BENCH_CELLS=detail (a part of the cells' names) measures only the cells whose name contains it. The discovery
pages' cells (`discovery_cells`) need a finished cluster run: bench/discovery.py makes one and measures them.
"""

from __future__ import annotations

import os
import statistics
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.dashboard import PASSWORD, Client, export_revision, list_filters, p95, start_server  # noqa: E402

# isort: split
# bench.dashboard has set Django up: the models can be imported now.
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db.models import Count  # noqa: E402

from browse.discovery_views import COLOURS  # noqa: E402
from discovery.models import ClusterRun  # noqa: E402
from judging.models import AnnotationQueue  # noqa: E402
from transcripts.models import Condition, Experiment, Question, Transcript  # noqa: E402
from transcripts.paging import encode_cursor  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "20"))
WARM_UP = 3


def cells() -> list[tuple[str, list[str], float]]:
    """(name, paths, target ms): a cell's paths are requested in turn, REPEAT times in all (or once each when
    there are more of them)."""
    condition = Condition.objects.order_by("pk").first()
    question = Question.objects.filter(transcripts__isnull=False).order_by("pk").first()
    total = Transcript.objects.count()
    middle = Transcript.objects.order_by("pk").values_list("pk", flat=True)[total // 2]
    filters = list_filters(condition, question)
    found = []
    for name, params in filters.items():
        query = urllib.parse.urlencode(params)
        deep = urllib.parse.urlencode({**params, "after": encode_cursor(None, middle)})
        found += [(f"list first page · {name}", [f"/transcripts/?{query}"], 100),
                  (f"list deep page · {name}", [f"/transcripts/?{deep}"], 100)]
    ids = list(Transcript.objects.filter(pk__gte=middle).order_by("pk").values_list("pk", flat=True)[:200:4])
    found += [("detail", [f"/transcripts/{pk}/" for pk in ids], 50),
              ("detail with filter (prev/next)",
               [f"/transcripts/{pk}/?model={condition.model_name}&k=64" for pk in ids], 50)]
    queues = AnnotationQueue.objects.annotate(n=Count("items"))
    for queue in {queues.get(name="bench-queue"), queues.order_by("-n").first()}:
        items = queue.items.order_by("position", "id").values_list("position", "id")
        position, pk = items[queue.n // 2]
        label = f"queue items ({queue.n:,} items)"
        base = f"/queues/{queue.pk}/items/"
        category = queue.items.exclude(transcript__judge_category="").values_list(
            "transcript__judge_category", flat=True).first()
        found += [(f"{label}", [base], 300),
                  (f"{label} · deep page", [f"{base}?after={encode_cursor(position, pk)}"], 300),
                  (f"{label} · judge", [f"{base}?judge={category}"], 300),
                  (f"{label} · consensus", [f"{base}?human={category}"], 300)]
    # The first hour's pages (issue 27): the polled progress partial, which now holds the conditions table, of
    # the experiment with the most conditions; a chart with nothing to plot (its "empty" check and message);
    # the styled 404.
    experiment = Experiment.objects.annotate(n=Count("conditions")).order_by("-n").first()
    found += [("experiment progress partial (with conditions)", [f"/experiments/{experiment.pk}/progress/"], 100),
              ("chart data · nothing to plot", ["/charts/misaligned-vs-k.json?status=cancelled"], 100),
              ("404 page", ["/experiments/0/results/"], 50)]
    return found


def measure(clients: list[Client], paths: list[str]) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in clients]
    for client in clients:
        for path in paths[:WARM_UP]:
            client.get(path)
    for i in range(max(REPEAT, len(paths))):
        for j, client in enumerate(clients):
            status, _, ms = client.get(paths[i % len(paths)])
            expected = 404 if paths[i % len(paths)].startswith("/experiments/0/") else 200
            assert status == expected, f"{paths[i % len(paths)]}: HTTP {status}"
            times[j].append(ms)
    return times


def discovery_cells() -> list[tuple[str, list[str], float]]:
    """The discovery pages (docs/discovery.md) on the newest finished k-means run: none in a database without one
    (bench/discovery.py makes one of 100k reasonings among 1M embedded transcripts and measures these there)."""
    run = ClusterRun.objects.filter(status="done", algorithm="kmeans").order_by("-pk").first()
    if run is None:
        print("discovery cells: no finished cluster run in this database (bench/discovery.py measures them)")
        return []
    label = run.clusters.order_by("-size").values_list("label", flat=True).first()
    liked = run.transcript_ids[::max(1, len(run.transcript_ids) // 20)][:20]
    points = f"{run.n_points:,} points"
    return [("discovery page", ["/discovery/"], 300),
            (f"discovery run page ({points}, tables)", [f"/discovery/runs/{run.pk}/"], 1000),
            *[(f"discovery map · {colour} ({points})", [f"/discovery/runs/{run.pk}/map.json?colour={colour}"], 1000)
              for colour in COLOURS],
            ("list · a cluster", [f"/transcripts/?cluster={run.pk}:{label}"], 100),
            ("list · more like a transcript (50 nearest)", [f"/transcripts/?like={pk}" for pk in liked], 300)]


def serve_and_measure(found: list[tuple[str, list[str], float]]) -> None:
    """Serve this checkout (and BENCH_BASELINE's revision) and print each cell's p50/p95."""
    user, _ = User.objects.get_or_create(username="bench-researcher")
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get_or_create(name="researcher")[0])
    servers = []
    try:
        server, port = start_server(Path(__file__).resolve().parent.parent)
        servers.append(server)
        clients = [Client(port)]
        clients[0].login(user.username)
        if revision := os.environ.get("BENCH_BASELINE"):
            old, old_port = start_server(export_revision(revision))
            servers.append(old)
            clients.append(clients[0].twin(old_port))  # sessions live in the database
        print(f"load average {os.getloadavg()[0]:.1f} at start; baseline {revision or '(none)'}", flush=True)
        for name, paths, target in found:
            times = measure(clients, paths)
            line = f"{name:<48} p50 {statistics.median(times[0]):6.1f}  p95 {p95(times[0]):6.1f} ms (≤ {target:.0f})"
            if len(times) > 1:
                line += (f"  baseline p50 {statistics.median(times[1]):6.1f}  p95 {p95(times[1]):6.1f} ms"
                         f"  → {p95(times[1]) / p95(times[0]):4.1f}×")
            print(line, flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at end", flush=True)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


def main() -> None:
    found = [cell for cell in cells() + discovery_cells() if os.environ.get("BENCH_CELLS", "") in cell[0]]
    serve_and_measure(found)


if __name__ == "__main__":
    main()
