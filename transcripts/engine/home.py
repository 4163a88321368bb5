"""Where a driver's database work runs: off the event loop, on one thread with its own connection, so the loop
never blocks on the database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
from collections.abc import Callable

from django.db import connection


class Home:
    """Runs a driver's database work on one thread, its own connection: the thread that started the driver
    (which waits for it anyway), or the driver's recording thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.work: queue.SimpleQueue = queue.SimpleQueue()

    async def run(self, fn: Callable, *args):
        future = self.loop.create_future()
        self.work.put((fn, args, future))
        return await future

    def serve(self, until: concurrent.futures.Future):
        """Run database work until `until` (the driver) is done; returns its result."""
        until.add_done_callback(lambda _: self.work.put(None))
        self._serve()
        return until.result()

    def serve_until_stopped(self) -> None:
        """A recording thread's body: run database work until `stop`, then give the connection back."""
        try:
            self._serve()
        finally:
            connection.close()

    def stop(self) -> None:
        self.work.put(None)

    def _serve(self) -> None:
        while (item := self.work.get()) is not None:
            fn, args, future = item
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the driver, which decides
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()  # e.g. PostgreSQL restarted: reconnect next time
                self.loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self.loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result, exc: BaseException | None) -> None:
    if not future.done():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
