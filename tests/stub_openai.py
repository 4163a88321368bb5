"""An OpenAI-compatible stub server that tests and benches run on 127.0.0.1.

Used only for third-party behaviour we cannot cause for real (429s, 500s, hangs, latency at scale,
known judge logprobs). `behaviour(request_json, n)` returns a `Reply`; n counts requests from 1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hang when larger than the client timeout)


def completion(content: str, *, reasoning: str | None = None, prompt_tokens: int = 10,
               completion_tokens: int = 5, finish_reason: str = "stop",
               top_logprobs: dict[str, float] | None = None, cached_tokens: int | None = None) -> dict:
    """A chat.completion body. `top_logprobs` (token → logprob) becomes the first token's alternatives;
    `cached_tokens` is reported as usage.prompt_tokens_details.cached_tokens (prompt caching)."""
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
    usage: dict = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                   "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": "stub",
        "choices": [choice], "usage": usage,
    }


def default_behaviour(request: dict, n: int) -> Reply:
    return Reply(body=completion(f"stub answer {n}"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when hundreds arrive at once (the 500-in-flight bench);
    # a dropped SYN is retried only after a second, which would look like a slow worker.
    request_queue_size = 1024


class StubOpenAI:
    """Start with `with StubOpenAI(behaviour) as stub:`; `stub.base_url` ends in /v1.

    Two servers behind one interface: by default a thread per connection (a behaviour may block, e.g. wait for
    an event); `asynchronous=True` serves every connection from one event loop, for thousands of requests in
    flight (the benches), where a behaviour must return at once and `Reply.delay` is waited without a thread."""

    def __init__(self, behaviour: Callable[[dict, int], Reply] = default_behaviour, *, asynchronous: bool = False):
        self.behaviour = behaviour
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # each request's HTTP headers, names lower-cased
        self.times: list[float] = []  # each request's arrival (time.monotonic())
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        if asynchronous:
            self._connections: set[asyncio.Task] = set()
            self._loop = asyncio.new_event_loop()
            started = concurrent.futures.Future()
            self._thread = threading.Thread(target=self._serve_async, args=(started,), daemon=True)
            self._thread.start()
            port = started.result(10)
        else:
            self._loop = None
            self.server = _Server(("127.0.0.1", 0), self._handler())
            port = self.server.server_address[1]
            self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def _received(self, payload: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(payload)
            self.headers.append(headers)
            self.times.append(time.monotonic())
            n = len(self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.behaviour(payload, n)

    def _answered(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send(MODELS)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = _json(self.rfile.read(length))
                try:
                    reply = stub._received(payload, {name.lower(): value for name, value in self.headers.items()})
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    stub._answered()

            def _send(self, reply: Reply):
                self.wfile.write(_response(reply))

        return Handler

    def _serve_async(self, started: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=4096)
        )
        self._async_server = server
        started.set_result(server.sockets[0].getsockname()[1])
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(asyncio.current_task())
        try:
            while request_line := await reader.readline():
                method = request_line.split(b" ", 1)[0]
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                if method != b"POST":
                    writer.write(_response(MODELS))
                    continue
                try:
                    reply = self._received(_json(body), headers)
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    writer.write(_response(reply))
                    await writer.drain()
                finally:
                    self._answered()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled connection (the stub stopping) ends quietly: asyncio would log the cancellation
        finally:
            writer.close()
            self._connections.discard(asyncio.current_task())

    async def _shutdown(self) -> None:
        self._async_server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def __enter__(self) -> StubOpenAI:
        if self._loop is None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is None:
            self.server.shutdown()
            self.server.server_close()
        else:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


MODELS = Reply(body={"object": "list", "data": [{"id": "stub", "object": "model"}]})


def _json(data: bytes) -> dict:
    try:
        return json.loads(data or b"{}")
    except json.JSONDecodeError:
        return {}


def _response(reply: Reply) -> bytes:
    body = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})).encode()
    lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{key}: {value}" for key, value in reply.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
