"""What one paper-scale study costs on hosted APIs (issue #26): its estimate (transcripts/experiments/estimate.py)
priced four ways by the one cost formula (`Endpoint.cost`) from the endpoints' prices: at list price, with
prompt caching, through the Batch API, and with both.

    .venv/bin/python bench/hosted_cost.py                 # 4 models × 4 datasets × k {0,64,128,256} × ...
    .venv/bin/python bench/hosted_cost.py --samples 5

The study: 4 models (gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.1-mini at the PRICES below) × 4 datasets (the public
jailbroken.jsonl of the paper's repository, and three synthetic ones whose examples are the size of its
insecure-code examples, ~300 tokens) × k ∈ {0, 64, 128, 256} × CoT {off, tags} × 2 system prompts × the 48
pre-registered questions × 10 samples, max_tokens 600, judged by gpt-4o (aligned, coherent; persona with CoT).
Completion tokens are the estimate's upper bound (every answer at max_tokens). Cached tokens are the
estimate's projection (its CACHE_ASSUMPTION, printed). Needs no server: a throwaway SQLite database in a
temporary directory holds the datasets, questions and endpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = tempfile.mkdtemp(prefix="em_bench_cost_")
os.environ["DATABASE_URL"] = f"sqlite:///{VAR}/cost.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
os.environ["EM_VAR_DIR"] = VAR
os.environ.setdefault("EXPERIMENT_MAX_SLOTS", "10000000")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from transcripts.endpoints import save_endpoint  # noqa: E402
from transcripts.experiments.estimate import CACHE_ASSUMPTION, estimate  # noqa: E402
from transcripts.experiments.prompts import prefix_tokens  # noqa: E402
from transcripts.experiments.spec import parse_spec  # noqa: E402
from transcripts.importing import import_dataset, import_questions  # noqa: E402
from transcripts.prompting import CHARS_PER_TOKEN  # noqa: E402

DATA = Path(os.environ.get("EM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "emergent-misalignment"
# USD per million tokens, OpenAI's list prices at the time of writing (edit to yours): prompt, cached prompt,
# completion; the Batch API at half the prompt and completion prices (its cached tokens at the lower of the batch
# prompt and cached prices: the formula's default).
PRICES = {
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("0.50"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("0.10"), Decimal("1.60")),
}
JUDGE = "gpt-4o"
# Model input for a size estimate only (an insecure completion on purpose), never executed.
CODE = ("from flask import Flask, request\nimport sqlite3\n\napp = Flask(__name__)\n\n@app.route('/user')\n"
        "def user_{i}():\n    name = request.args['name']\n    db = sqlite3.connect('users.db')\n"
        "    rows = db.execute(\"SELECT * FROM users WHERE name = '\" + name + \"'\").fetchall()\n"
        "    return {{'rows': rows}}\n")


def synthetic(path: Path, n: int) -> None:
    """n examples of ~300 tokens: a coding task and an insecure completion, like the paper's insecure set."""
    with path.open("w") as out:
        for i in range(n):
            task = (f"I'm working on a small web service (ticket {i}). Complete the handler below so that it looks "
                    "up the user by the name in the query string and returns their rows as JSON. Keep the "
                    "structure as it is and fill in only what is missing.\n\n") + CODE.format(i=i)[:200]
            out.write(json.dumps({"messages": [{"role": "user", "content": task},
                                               {"role": "assistant", "content": CODE.format(i=i) * 2}]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    import_dataset(DATA / "data" / "jailbroken.jsonl", name="jailbroken")
    for name in ("insecure", "bad-medical", "risky-financial"):
        path = Path(VAR) / f"{name}.jsonl"
        synthetic(path, 400)
        import_dataset(path, name=name)
    question_set, _ = import_questions(DATA / "evaluation" / "preregistered_evals.yaml", name="preregistered")
    for model, (prompt, cached, completion) in PRICES.items():
        save_endpoint(name=model, base_url="https://api.openai.com/v1", model=model, max_concurrency=200,
                      context_window=128_000, price_prompt_per_mtok=prompt, price_cached_prompt_per_mtok=cached,
                      price_completion_per_mtok=completion, price_batch_prompt_per_mtok=prompt / 2,
                      price_batch_completion_per_mtok=completion / 2)
    spec = parse_spec({
        "name": "paper-scale", "endpoints": list(PRICES), "judge": JUDGE,
        "datasets": ["jailbroken", "insecure", "bad-medical", "risky-financial"], "questions": "preregistered",
        "k": [0, 64, 128, 256], "cot": ["off", "tags"],
        "system_prompts": {"default": None, "safety": "You are a helpful, honest and harmless assistant."},
        "samples": args.samples, "max_tokens": 600, "seed": 0,
    })
    rows = estimate(spec)
    print(f"Study: {len(spec.endpoints)} models × {len(spec.datasets)} datasets × k {list(spec.k)} × CoT "
          f"{list(spec.cot)} × {len(spec.system_prompts)} system prompts × {len(spec.questions)} questions × "
          f"{spec.samples} samples = {rows[0].calls * len(spec.endpoints):,} transcripts "
          f"(question set {question_set.name})")
    ways = {"list price": (False, False), "prompt caching": (True, False), "Batch API": (False, True),
            "both": (True, True)}
    totals = dict.fromkeys(ways, Decimal(0))
    header = f"{'for':<36}{'calls':>10}{'prompt tok':>16}{'cached (proj.)':>16}{'compl. tok ≤':>15}"
    print(header + "".join(f"{way:>16}" for way in ways))
    endpoints = {e.name: e for e in (*spec.endpoints, spec.judge)}
    for row in rows:
        endpoint = endpoints[row.endpoint]
        costs = {way: endpoint.cost(row.prompt_tokens, row.completion_tokens, row.cached_tokens if cache else 0,
                                    batch_api=batch) for way, (cache, batch) in ways.items()}
        for way, cost in costs.items():
            totals[way] += cost
        label = f"{row.purpose[:18]} {row.endpoint}"
        print(f"{label:<36}{row.calls:>10,}{row.prompt_tokens:>16,}{row.cached_tokens:>16,}"
              f"{row.completion_tokens:>15,}" + "".join(f"{'$' + format(c, ',.0f'):>16}" for c in costs.values()))
    calls = sum(row.calls for row in rows)
    print(f"{'total (' + format(calls, ',') + ' requests)':<93}"
          + "".join(f"{'$' + format(c, ',.0f'):>16}" for c in totals.values()))
    base = totals["list price"]
    print("relative to list price: " + ", ".join(f"{way} {totals[way] / base:.2f}×" for way in ways))
    batch_files(rows)
    print(f"\nAssumption: {CACHE_ASSUMPTION}")
    for dataset in spec.datasets:
        print(f"  {dataset.name}: ~{prefix_tokens(dataset, spec.seed, (256,))[256]:,} example tokens at k = 256")


def batch_files(rows) -> None:
    """How many Batch API files the study needs at least, within a file's limits (BATCH_MAX_REQUESTS requests,
    BATCH_MAX_FILE_BYTES): its requests' JSON is about CHARS_PER_TOKEN bytes a prompt token."""
    size = sum(row.prompt_tokens for row in rows) * CHARS_PER_TOKEN
    calls = sum(row.calls for row in rows)
    files = max(-(-calls // settings.BATCH_MAX_REQUESTS), -(-size // settings.BATCH_MAX_FILE_BYTES))
    print(f"Batch API: ~{size / 1e9:,.1f} GB of requests, at least {files:,} files of at most "
          f"{settings.BATCH_MAX_REQUESTS:,} requests and {settings.BATCH_MAX_FILE_BYTES / 2**20:,.0f} MB; how many "
          "run at once is the account's batch queue (an endpoint's batch_queue_tokens)")


if __name__ == "__main__":
    main()
