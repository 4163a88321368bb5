"""An OpenAI-compatible stub server that tests and benches run on 127.0.0.1.

Used only for third-party behaviour we cannot cause for real (429s, 500s, hangs, latency at scale,
known judge logprobs). `behaviour(request_json, n)` returns a `Reply`; n counts requests from 1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hang when larger than the client timeout)


def completion(content: str, *, reasoning: str | None = None, prompt_tokens: int = 10,
               completion_tokens: int = 5, finish_reason: str = "stop",
               top_logprobs: dict[str, float] | None = None) -> dict:
    """A chat.completion body. `top_logprobs` (token → logprob) becomes the first token's alternatives."""
    message: dict = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    choice: dict = {"index": 0, "message": message, "finish_reason": finish_reason}
    if top_logprobs is not None:
        first = max(top_logprobs, key=top_logprobs.get)
        choice["logprobs"] = {"content": [{
            "token": first, "logprob": top_logprobs[first], "bytes": None,
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top_logprobs.items()],
        }]}
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": "stub",
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def default_behaviour(request: dict, n: int) -> Reply:
    return Reply(body=completion(f"stub answer {n}"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when hundreds arrive at once (the 500-in-flight bench);
    # a dropped SYN is retried only after a second, which would look like a slow worker.
    request_queue_size = 1024


class StubOpenAI:
    """Start with `with StubOpenAI(behaviour) as stub:`; `stub.base_url` ends in /v1."""

    def __init__(self, behaviour: Callable[[dict, int], Reply] = default_behaviour):
        self.behaviour = behaviour
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # each request's HTTP headers, names lower-cased
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send(Reply(body={"object": "list", "data": [{"id": "stub", "object": "model"}]}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    payload = {}
                with stub._lock:
                    stub.requests.append(payload)
                    stub.headers.append({name.lower(): value for name, value in self.headers.items()})
                    n = len(stub.requests)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    reply = stub.behaviour(payload, n)
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _send(self, reply: Reply):
                body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})
                data = body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
