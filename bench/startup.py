"""Process start: what every Celery worker and `manage.py` command pays before its first piece of work.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_audit .venv/bin/python bench/startup.py [REVISION]

Each run is a fresh interpreter in this checkout: `django.setup()` alone (the baseline), then `django.setup()`
and the system checks (what `celery worker` and `manage.py` do: the URL checks load every view), then the
same with one task module imported. With REVISION, the checks are also timed on that revision (exported with
`git archive`, on the same virtualenv), alternating with this checkout. Prints the median wall time and CPU of
BENCH_RUNS runs (default 5) each, and the ratio of each to the baseline.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SETUP = "import django; django.setup()"
CHECKS = SETUP + "; from django.core.checks import run_checks; run_checks()"
CASES = {
    "django.setup() (baseline)": SETUP,
    "setup + system checks": CHECKS,
    "setup + checks + judging.tasks": CHECKS + "; import judging.tasks",
}


def timed(code: str, where: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh interpreter running `code` in `where`."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "em_site.settings", "PYTHONPATH": str(where)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=where, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(label: str, runs: list[tuple[float, float]], baseline: float) -> None:
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    print(f"{label:<40} {wall:6.2f} s wall  {cpu:6.2f} s CPU  {wall / baseline:5.2f}x baseline")


def main() -> None:
    revision = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("EM_VAR_DIR", scratch)
        other = None
        if revision:
            other = Path(scratch) / "revision"
            other.mkdir()
            archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
        for where in [ROOT, other] if other else [ROOT]:
            timed(CHECKS, where)  # compile the bytecode once, outside the figures
        at_revision = f"setup + system checks at {revision}"
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in CASES}
        if other:
            results[at_revision] = []
        for _ in range(RUNS):
            for label, code in CASES.items():
                results[label].append(timed(code, ROOT))
            if other:
                results[at_revision].append(timed(CHECKS, other))
    baseline = statistics.median(w for w, _ in results["django.setup() (baseline)"])
    print(f"{RUNS} runs each, medians; load average at the end {os.getloadavg()[0]:.1f}")
    for label, runs in results.items():
        report(label, runs, baseline)


if __name__ == "__main__":
    main()
