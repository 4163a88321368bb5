"""The HTTP requests of one row (`Calls`), and the worker process's event loop with its `openai` clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx2
import pydantic
from celery.signals import worker_ready
from django.conf import settings

from ..models import Endpoint
from .failures import MalformedReply, retry_after
from .jobs import Usage
from .limits import Account, Db, estimated_tokens

if TYPE_CHECKING:
    import openai
    from openai.types import Completion, CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion

    from .driver import Driver

CONNECTIONS_PER_CLIENT = 50  # requests in flight per HTTP connection pool (see Process.client)

_request_numbers = itertools.count()


def _request_key() -> str:
    """A key unique in this process for the SDK's idempotency option. Left unset, the SDK draws a uuid4 per
    request (a fifth of its own CPU time per request at 500 in flight, by py-spy) for a header the OpenAI
    client never sends."""
    return f"em-audit-{os.getpid()}-{next(_request_numbers)}"


class Calls:
    """The HTTP requests made for one row: each waits for the account's limits, is sent with the process's
    client for the endpoint, has its rate-limit headers read, and adds to the row's usage."""

    def __init__(self, process: Process, endpoint: Endpoint, account: Account, db: Db,
                 on_start: Callable[[], None] = lambda: None, on_rate_limited: Callable[[], None] = lambda: None):
        self.endpoint, self.usage = endpoint, Usage()
        self._process, self._account, self._db = process, account, db
        self._on_start, self._on_rate_limited = on_start, on_rate_limited

    async def chat(self, **request) -> ChatCompletion:
        """A chat completion (`/chat/completions`) from the endpoint's model."""
        from openai.types.chat import ChatCompletion

        return await self._send("/chat/completions", ChatCompletion, request)

    async def completion(self, **request) -> Completion:
        """A raw text continuation (`/completions`) from the endpoint's model."""
        from openai.types import Completion

        return await self._send("/completions", Completion, request)

    async def embeddings(self, **request) -> CreateEmbeddingResponse:
        """Vectors of `input` (`/embeddings`) from the endpoint's embedding model."""
        from openai.types import CreateEmbeddingResponse

        return await self._send("/embeddings", CreateEmbeddingResponse, request)

    async def _send(self, path: str, reply_type: type[ChatCompletion | Completion | CreateEmbeddingResponse],
                    request: dict):
        """POST the request as it is, with the client's documented `post` for a path: the typed `create` methods
        first walk every message through the SDK's parameter transform (resolving a union of TypedDicts per
        message), which cost a third of the event loop's time at 500 in flight with k = 2 and grows with the
        messages: k = 256 sends over 500 of them. Our requests are plain JSON already. Status errors are the
        client's own (`openai.APIStatusError` and its kinds); the reply is built as the SDK's own types."""
        import openai

        client = self._process.client(self.endpoint)
        tokens = estimated_tokens(request)
        await self._account.permit(tokens, self._db)
        self._on_start()
        account = self._account
        account.in_flight += 1
        account.in_flight_tokens += tokens
        try:
            try:
                response = await client.post(path, cast_to=httpx2.Response,
                                             body={"model": self.endpoint.model, **request},
                                             options={"idempotency_key": _request_key()})
            finally:
                account.in_flight -= 1
                account.in_flight_tokens -= tokens
        except openai.APIStatusError as exc:
            account.observe(exc.response.headers)
            if exc.status_code == 429:
                self._on_rate_limited()
                account.hold(retry_after(exc.response) or 0.0)
            raise
        account.observe(response.headers)
        try:
            reply = response.json()
        except ValueError as exc:
            raise MalformedReply(f"the reply is not JSON: {response.text[:300]!r}") from exc
        return self.received(reply_type, reply, response.text)

    def received(self, reply_type: type[ChatCompletion | Completion], reply, text: str = ""):
        """A reply's body as the SDK's type, its usage added to the row's (also a Batch API output line's)."""
        if not isinstance(reply, dict):
            raise MalformedReply(f"the reply is not a JSON object: {(text or str(reply))[:300]!r}")
        try:
            # pydantic-core validates a reply in microseconds; the SDK's lenient `construct` (what its own
            # `create` uses, so a provider's unexpected value is kept, not refused) takes ~20 times longer.
            completion = reply_type.model_validate(reply)
        except pydantic.ValidationError:
            completion = reply_type.construct(**reply)
        self.usage.add(completion)
        return completion


def new_client(base_url: str, api_key: str, timeout: float, places: int, tls: ssl.SSLContext) -> openai.AsyncOpenAI:
    """An `openai` client as the engine uses it (the bench's baseline too). Redirects are not followed: a server
    must not send our key on to another host. The HTTP transport is aiohttp's (the SDK's documented
    `DefaultAioHttpClient`, "for improved concurrency performance"): against the same stub at 500 in flight it
    spent 1.1-1.3 ms of CPU per request where the default httpx transport spent 1.9-2.1 ms, and the worker's
    CPU is what bounds a process's throughput. Its pool may hold every place (aiohttp's own default would cap
    it at 100): the engine bounds what is in flight."""
    import openai

    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0,
        http_client=openai.DefaultAioHttpClient(
            follow_redirects=False, verify=tls,
            limits=httpx2.Limits(max_connections=places, max_keepalive_connections=places),
        ),
    )


class Process:
    """The event loop of this worker process (a daemon thread), with what it shares between drivers: one
    `openai` client per endpoint configuration, the accounts' limits, the running drivers."""

    def __init__(self):
        # The SDK takes ~0.85 s to import: here, on the thread that first asks for the engine (a worker as it
        # starts: `_ready_with_the_worker`), never on the event loop, where it would hold every request in flight.
        import openai  # noqa: F401

        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.clients: dict[tuple, list[openai.AsyncOpenAI]] = {}
        self.turn = 0  # which of an endpoint's clients takes the next request
        self.tls: ssl.SSLContext | None = None
        self.accounts: dict[str, Account] = {}
        self.drivers: dict[tuple[str, int], Driver] = {}
        self.active = 0  # requests not over, of every driver of this process
        self.lock = threading.Lock()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="call-engine").start()

    def client(self, endpoint: Endpoint) -> openai.AsyncOpenAI:
        """A client (and connection pool) for an endpoint configuration, in turn: one per
        CONNECTIONS_PER_CLIENT of the places this process may fill, because the HTTP pool looks at each of its
        connections whenever it places a request or gets one back (one pool of 500 cost a fifth of the loop's
        time at 500 in flight). Retries are ours (max_retries=0): they renew the lease and respect the
        account's limits."""
        api_key = endpoint.read_api_key()
        clients = self.clients.setdefault((endpoint.base_url, api_key, endpoint.timeout_seconds), [])
        places = min(endpoint.max_concurrency, settings.ENGINE_MAX_IN_FLIGHT)
        while len(clients) < -(-places // CONNECTIONS_PER_CLIENT):
            clients.append(new_client(endpoint.base_url, api_key, endpoint.timeout_seconds, places, self._tls()))
        self.turn += 1
        return clients[self.turn % len(clients)]

    def _tls(self) -> ssl.SSLContext:
        """One TLS context for every client of the process (each takes ~40 ms to build, on the loop)."""
        if self.tls is None:
            self.tls = httpx2.create_ssl_context()
        return self.tls

    def account(self, endpoint: Endpoint, limits: tuple[int | None, int | None]) -> Account:
        account = self.accounts.setdefault(endpoint.account, Account(endpoint.account))
        account.configure(*limits)
        return account


_process_lock = threading.Lock()
_current: Process | None = None


def the_process() -> Process:
    global _current
    with _process_lock:
        if _current is None or _current.pid != os.getpid():  # none yet, or a forked child's copy
            _current = Process()
        return _current


@worker_ready.connect
def _ready_with_the_worker(**kwargs) -> None:
    """A worker calls endpoints: its event loop and the `openai` SDK are ready before its first task, as they
    were when the SDK came with `django.setup()`."""
    the_process()
