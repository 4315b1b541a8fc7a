"""The cloud's database access: one engine, blocking work in threads, times rendered as RFC 3339."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from edgefc.cloud.notify import Notifier

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")

BATCH_MAX = 256  # items per shared transaction: bounds its IN lists and how long one commit holds rows


def now() -> float:
    """The cloud's clock, epoch seconds: every time the cloud stores is its own."""
    return time.time()


def iso(seconds: float | None) -> str | None:
    """Epoch seconds → RFC 3339 UTC (``2026-12-01T04:19:22.120Z``); None stays None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Runs a function on a connection inside one transaction, in a worker thread (never on the event loop)."""

    def __init__(self, engine: Engine, notifier: Notifier) -> None:
        self.engine = engine
        self.notifier = notifier
        # SQLite has one writer at a time and its busy handler sleeps in steps of up to 100 ms: taking turns
        # here is far faster than letting threads collide there. PostgreSQL needs no such turn-taking.
        self.turn: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )

    async def run(self, work: Callable[..., T], *args: Any, notify: Sequence[str] = ()) -> T:
        """``work(conn, *args)`` in a transaction that commits when it returns; raises what ``work`` raises.

        ``notify`` topics are announced with the commit (PostgreSQL delivers NOTIFY only if it commits) and
        woken in this process right after.
        """
        result = await asyncio.to_thread(self._run, work, args, notify)
        for topic in notify:
            self.notifier.wake_local(topic)
        return result

    def _run(self, work: Callable[..., T], args: tuple[Any, ...], notify: Sequence[str] = ()) -> T:
        with self.turn, self.engine.begin() as conn:
            result = work(conn, *args)
            self.notifier.announce(conn, notify)
            return result

    def run_sync(self, work: Callable[..., T], *args: Any) -> T:
        """The same, blocking (for code already in a thread)."""
        return self._run(work, args)



class Batcher(Generic[K, R]):
    """Group commit: calls that arrive while a transaction of the same kind runs share the next one.

    A thousand gateways waking at once cost a few transactions instead of a thousand. ``work(conn, items)``
    returns, for each item in order, its result or the exception to raise for it alone, plus the topics to
    announce with the commit; an error of the transaction itself is raised to every call in it.
    The transaction is handed to a worker thread whose completion callback resolves the callers' futures,
    so a caller that is cancelled (its client left) never strands the others and no task is left behind.
    """

    def __init__(self, store: Store,
                 work: Callable[[Connection, list[K]], tuple[list[R | Exception], Sequence[str]]]) -> None:  # fmt: skip
        self.store = store
        self.work = work
        self._queue: list[tuple[K, asyncio.Future[R]]] = []
        self._busy = False

    async def submit(self, item: K) -> R:
        """``item``'s result from the next shared transaction; raises what ``work`` gave for it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._busy:
            self._start()
        return await future

    def _start(self) -> None:
        batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
        items = [item for item, _ in batch]
        try:
            done = asyncio.get_running_loop().run_in_executor(None, self._transaction, items)
        except RuntimeError as exc:  # the executor is shut down (the replica is stopping): nobody is left waiting
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_exception(exc)
            self._queue = []
            return
        self._busy = True
        done.add_done_callback(lambda outcome: self._finish(batch, outcome))

    def _transaction(self, items: list[K]) -> tuple[list[R | Exception], Sequence[str]]:
        with self.store.turn, self.store.engine.begin() as conn:
            results, topics = self.work(conn, items)
            self.store.notifier.announce(conn, topics)
            return results, topics

    def _finish(self, batch: list[tuple[K, asyncio.Future[R]]],
                outcome: asyncio.Future[tuple[list[R | Exception], Sequence[str]]]) -> None:  # fmt: skip
        self._busy = False
        error = outcome.exception()
        if error is None:
            results, topics = outcome.result()
            for topic in topics:
                self.store.notifier.wake_local(topic)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    (future.set_exception if isinstance(result, Exception) else future.set_result)(result)  # type: ignore[arg-type]
        else:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        if self._queue:
            self._start()
