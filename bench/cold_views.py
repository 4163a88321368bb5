"""Cold views: the first request of each report page after a change of its inputs (issue #17: no page computes a
resampled statistic in the request), against the bench database of `generate_bench_data` (see bench/dashboard.py).

    BENCH_BASELINE=b25fe1d DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bg .venv/bin/python bench/cold_views.py

Serves this checkout (with a real Celery worker, which computes the reports) and the baseline revision from two
gunicorn servers on the same database. Round 0 starts with no report in this checkout's cache (the page can only
say "computing"); each later round first changes the inputs of every report (one verdict of the first experiment
flipped through the verdict writer, one label of the bench queue edited), then requests each page once on both
servers, alternating which goes first: the baseline computes in the request, this checkout shows the last result
("updating") and enqueues. Then the worker is let catch up (its time is printed) before the next change.
Prints per page the first-request times (ms) of both, and the worker's catch-up time per round.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.dashboard import PASSWORD, ROOT, Client, export_revision, fetch, start_server, start_worker  # noqa: E402

# isort: split
# bench.dashboard has set Django up: the models can be imported now.
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from judging.models import AnnotationQueue, GoldSuite, JudgeScore, Label  # noqa: E402
from judging.verdicts import active_versions, refresh_cache  # noqa: E402
from transcripts.models import Experiment  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CATCH_UP_SECONDS = 600
HTMX = {"HX-Request": "true"}


def pages() -> list[tuple[str, str, dict]]:
    """(name, path, headers) of every page or partial that reads a background report."""
    experiment, other = Experiment.objects.order_by("pk")[:2]
    queue = AnnotationQueue.objects.get(name="bench-queue")
    versions = active_versions(experiment)
    side = "&".join(f"{key}={getattr(versions, key).pk}" for key in ("aligned", "coherent", "persona"))
    pair = "&".join(f"{prefix}-{part}" for prefix in ("a", "b") for part in side.split("&"))
    e, q = experiment.pk, queue.pk
    found = [
        ("results table (judged counts)", f"/experiments/{e}/results/", HTMX),
        ("results statistics", f"/experiments/{e}/statistics/", HTMX),
        ("results paired", f"/experiments/{e}/statistics/paired/", HTMX),
        ("dose-response chart", f"/experiments/{e}/statistics/dose-response.json", {}),
        ("results calibration rates", f"/experiments/{e}/calibration/{q}/", HTMX),
        ("compare with another run", f"/experiments/{e}/compare/?other={other.pk}", {}),
        ("methods", f"/experiments/{e}/methods/", {}),
        ("judge vs judge", f"/experiments/{e}/judges/?{pair}", {}),
        ("judge vs judge scatter", f"/experiments/{e}/judges/aligned/?{pair}", {}),
        ("queue agreement", f"/queues/{q}/agreement/", {}),
        ("queue calibration", f"/queues/{q}/calibration/?experiment={e}", {}),
        ("queue span agreement", f"/queues/{q}/spans/", {}),
    ]
    if suite := GoldSuite.objects.order_by("pk").first():
        found.append(("gold suite (synchronous)", f"/gold/{suite.pk}/", {}))
    return found


def first_request(client: Client, path: str, headers: dict) -> tuple[int, str, float]:
    status, body, ms = fetch(client, path, headers)
    return status, body.decode(), ms


def settled(body: str) -> bool:
    """This checkout's page shows only current reports (nothing computing, updating or failed)."""
    states = re.findall(r'data-state="([a-z]+)"', body)
    return all(state == "ready" for state in states) and "computing" not in body  # JSON says computing\u2026


def change_inputs(experiment: Experiment, queue: AnnotationQueue, round_: int) -> None:
    """A new verdict for one transcript of the experiment (its aligned score mirrored around 50, written through the
    verdict writer like a judge's) and an edit of one label of the queue: every report's fingerprint moves."""
    versions = active_versions(experiment)
    score = (JudgeScore.objects.filter(rubric_version=versions.aligned, transcript__experiment=experiment,
                                       status=JudgeScore.Status.DONE, outcome=JudgeScore.Outcome.SCORE)
             .order_by("transcript_id")[round_])  # another one each round: the inputs never return to old ones
    JudgeScore.objects.filter(pk=score.pk).update(score=100.0 - score.score, finished_at=timezone.now())
    refresh_cache(experiment, [score.transcript_id])
    label = Label.objects.filter(item__queue=queue).order_by("pk")[round_]
    Label.objects.filter(pk=label.pk).update(updated_at=timezone.now())


def main() -> None:
    revision = os.environ.get("BENCH_BASELINE")
    user, _ = User.objects.get_or_create(username="bench-researcher")
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get_or_create(name="researcher")[0])
    experiment = Experiment.objects.order_by("pk").first()
    queue = AnnotationQueue.objects.get(name="bench-queue")
    print(f"database {connection.settings_dict['NAME']}; load average {os.getloadavg()}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE em_cache")  # round 0: no report computed yet
    processes = []
    try:
        server, port = start_server(ROOT)
        processes.append(server)
        processes.append(start_worker())
        client = Client(port)
        client.login(user.username)
        baseline = None
        if revision:
            old_server, old_port = start_server(export_revision(revision))
            processes.append(old_server)
            baseline = client.twin(old_port)
        measured = pages()
        for c in filter(None, (client, baseline)):  # each server worker's first request (imports) is not timed
            for _ in range(4):
                c.request("GET", "/experiments/", headers={}).read()
        times: dict[str, dict[str, list[float]]] = {name: {"new": [], "baseline": []} for name, _, _ in measured}
        for round_ in range(ROUNDS + 1):
            if round_:
                change_inputs(experiment, queue, round_)
            print(f"\n== round {round_}: {'no report computed yet' if not round_ else 'inputs changed'}; "
                  f"load average {os.getloadavg()[0]:.1f} ==", flush=True)
            for index, (name, path, headers) in enumerate(measured):
                order = [("new", client), ("baseline", baseline)][:: 1 if (index + round_) % 2 else -1]
                line = []
                for label, c in order:
                    if c is None:
                        continue
                    status, body, ms = first_request(c, path, headers)
                    assert status in (200, 404) if label == "new" else status == 200, f"{label} {path}: {status}"
                    times[name][label].append(ms)
                    state = "" if label == "baseline" else (" ready" if settled(body) else " (not current)")
                    line.append(f"{label} {ms:7.0f} ms{state}")
                print(f"{name:<32} " + "   ".join(sorted(line, reverse=True)), flush=True)
            start = time.monotonic()
            pending = list(measured)
            while pending and time.monotonic() - start < CATCH_UP_SECONDS:
                pending = [(n, p, h) for n, p, h in pending if not settled(first_request(client, p, h)[1])]
                time.sleep(1)
            print(f"worker caught up in {time.monotonic() - start:.0f} s"
                  + (f"; still not current: {[n for n, _, _ in pending]}" if pending else ""), flush=True)
        print("\n== first request after a change (rounds 1…): median (max), ms ==")
        for name, by in times.items():
            new, old = by["new"][1:], by["baseline"][1:]
            cells = [f"new {statistics.median(new):6.0f} ({max(new):6.0f})"]
            if old:
                cells.append(f"baseline {statistics.median(old):6.0f} ({max(old):6.0f})")
            print(f"{name:<32} " + "   ".join(cells) + f"   no result yet: new {by['new'][0]:.0f}", flush=True)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
