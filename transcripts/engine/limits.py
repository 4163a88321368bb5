"""Limits per provider account (server + key variable): requests and tokens per minute paced across every
process, and the provider's rate-limit headers read to slow down before a 429."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import transaction

from .. import prompting
from ..models import AccountPace, Endpoint

PACE_CHUNK_SECONDS = 1.0  # how much of an account's time a process reserves at once (at least one request's)


Db = Callable[..., Awaitable[Any]]  # runs a function on the driver's home thread: `await db(fn, *args)`


def _reserve(account: str, resource: str, seconds: float) -> tuple[float, float]:
    """Reserve `seconds` of the account's `resource` ("requests" or "tokens") capacity: the span from the
    moment nothing is reserved any more (or now). Every process reserves from the same row."""
    column = f"{resource}_free_at"
    with transaction.atomic():
        pace, _ = AccountPace.objects.select_for_update().get_or_create(account=account)
        start = max(time.time(), getattr(pace, column))
        AccountPace.objects.filter(pk=pace.pk).update(**{column: start + seconds})
    return start, start + seconds


class _Pacer:
    """One limit of one account (per minute) as this process sees it: spans of the account's time reserved in
    the database, spent locally one request at a time (a request of n units takes n × 60 / limit seconds)."""

    def __init__(self, account: str, resource: str, per_minute: int):
        self.account, self.resource, self.per_minute = account, resource, per_minute
        self.spacing = 60 / per_minute
        self.spans: list[list[float]] = []
        self.lock = asyncio.Lock()

    async def take(self, units: float, db: Db) -> float:
        """The moment a request of `units` may start."""
        need = units * self.spacing
        async with self.lock:
            start = None
            while need > 1e-9:
                if not self.spans:
                    seconds = max(need, PACE_CHUNK_SECONDS)
                    self.spans.append(list(await db(_reserve, self.account, self.resource, seconds)))
                span = self.spans[0]
                span[0] = max(span[0], time.time())  # time that passed unused is not saved up for a burst
                if span[0] >= span[1]:
                    self.spans.pop(0)
                    continue
                start = span[0] if start is None else start
                used = min(need, span[1] - span[0])
                span[0] += used
                need -= used
            return start if start is not None else time.time()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)?")
_UNIT_SECONDS = {"ms": 0.001, "h": 3600, "m": 60, "s": 1, None: 1}


def _duration(value: str | None) -> float | None:
    """OpenAI's reset headers: "1s", "6m0s", "59.32s", "20ms" (or plain seconds)."""
    if not value:
        return None
    parts = _DURATION.findall(value.strip())
    if not parts:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit or None] for number, unit in parts)


def _count(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class _HeaderWindow:
    """What a provider's latest rate-limit headers allow of one resource until their reset: `left` more
    (requests or tokens) beyond what was in flight when the reply came, counted down by every request this
    process starts after it. A hold alone would not do: "1 left" with nothing in flight still allows one
    request, not the two the free places would start."""

    def __init__(self):
        self.left: int | None = None
        self.until = 0.0

    def observe(self, remaining: int | None, reset: float | None, in_flight: int) -> None:
        if remaining is None or not reset:
            return
        now = time.time()
        left = remaining - in_flight
        if self.left is not None and now < self.until:
            # Replies come back out of order: one sent earlier says more remains than one sent later. Within
            # a window the smaller count is the true one.
            self.left, self.until = min(self.left, left), max(self.until, now + reset)
        else:
            self.left, self.until = left, now + reset

    def wait(self, amount: int) -> float:
        """Seconds until `amount` may start (0: now)."""
        if self.left is None or time.time() >= self.until:
            self.left = None
            return 0.0
        return 0.0 if self.left >= amount else self.until - time.time()

    def take(self, amount: int) -> None:
        if self.left is not None:
            self.left -= amount


class Account:
    """What this process knows of one provider account's limits: its pacers, the requests and (estimated)
    tokens it has in flight there, what the provider's headers say is left, and until when a 429's
    Retry-After says to hold new requests."""

    def __init__(self, account: str):
        self.account = account
        self.requests: _Pacer | None = None
        self.tokens: _Pacer | None = None
        self.hold_until = 0.0
        self.in_flight = 0
        self.in_flight_tokens = 0
        self.requests_left = _HeaderWindow()
        self.tokens_left = _HeaderWindow()

    def configure(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        if (self.requests and self.requests.per_minute) != requests_per_minute:
            self.requests = _Pacer(self.account, "requests", requests_per_minute) if requests_per_minute else None
        if (self.tokens and self.tokens.per_minute) != tokens_per_minute:
            self.tokens = _Pacer(self.account, "tokens", tokens_per_minute) if tokens_per_minute else None

    async def permit(self, tokens: int, db: Db) -> None:
        """Wait until a request of about `tokens` tokens may start, and count it against what the headers
        said is left."""
        while True:
            # Wait for the headers before reserving the account's pacing: a reservation spent waiting is lost.
            if (wait := self._told_to_wait(tokens)) > 0:
                await asyncio.sleep(wait)
                continue
            start = time.time()
            if self.requests:
                start = max(start, await self.requests.take(1, db))
            if self.tokens:
                start = max(start, await self.tokens.take(tokens, db))
            if start > time.time():
                await asyncio.sleep(start - time.time())
            if self._told_to_wait(tokens) > 0:  # a reply meanwhile said to wait: wait, then take anew
                continue
            self.requests_left.take(1)
            self.tokens_left.take(tokens)
            return

    def _told_to_wait(self, tokens: int) -> float:
        """Seconds a 429's Retry-After or the headers' budget says a request of `tokens` must still wait."""
        return max(self.hold_until - time.time(), self.requests_left.wait(1), self.tokens_left.wait(tokens))

    def hold(self, seconds: float) -> None:
        self.hold_until = max(self.hold_until, time.time() + seconds)

    def observe(self, headers) -> None:
        """Slow down before a 429: start no more than the provider's headers say remains beyond what is
        already in flight, until their window resets."""
        self.requests_left.observe(_count(headers.get("x-ratelimit-remaining-requests")),
                                   _duration(headers.get("x-ratelimit-reset-requests")), self.in_flight)
        self.tokens_left.observe(_count(headers.get("x-ratelimit-remaining-tokens")),
                                 _duration(headers.get("x-ratelimit-reset-tokens")), self.in_flight_tokens)


def account_limits(endpoint: Endpoint) -> tuple[int | None, int | None]:
    """The account's limits: the strictest of the current versions of every endpoint on it (this one's own when
    none is current), so two names on one key cannot each spend the whole allowance."""
    rows = Endpoint.objects.filter(base_url=endpoint.base_url, api_key_env=endpoint.api_key_env, is_current=True)
    figures = list(rows.values_list("requests_per_minute", "tokens_per_minute")) or [
        (endpoint.requests_per_minute, endpoint.tokens_per_minute)
    ]
    requests = [r for r, _ in figures if r]
    tokens = [t for _, t in figures if t]
    return (min(requests) if requests else None), (min(tokens) if tokens else None)


def estimated_tokens(request: dict) -> int:
    """Prompt + completion tokens a request may use, as the tokens-per-minute limit counts it."""
    if "messages" in request:
        prompt = prompting.estimate_tokens(request["messages"])
    elif "input" in request:  # embeddings: a text or a list of texts
        texts = [request["input"]] if isinstance(request["input"], str) else request["input"]
        prompt = sum(len(text) for text in texts) // prompting.CHARS_PER_TOKEN
    else:
        prompt = len(request.get("prompt", "")) // prompting.CHARS_PER_TOKEN
    return prompt + (request.get("max_tokens") or 0)
