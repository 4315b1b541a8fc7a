"""The cloud's database access: one engine, blocking work in threads, times rendered as RFC 3339."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from edgefc.cloud.notify import Notifier

T = TypeVar("T")


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
        self._turn: threading.Lock | contextlib.nullcontext[None] = (
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
        with self._turn, self.engine.begin() as conn:
            result = work(conn, *args)
            self.notifier.announce(conn, notify)
            return result

    def run_sync(self, work: Callable[..., T], *args: Any) -> T:
        """The same, blocking (for code already in a thread)."""
        return self._run(work, args)


