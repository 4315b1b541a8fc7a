"""Wake-ups between requests and between replicas: "something changed for topic X, look in the database".

A notification carries no data, only a topic (``instance:<id>``, ``answer:<request id>``, ``events:<id>``);
whoever waits re-reads the database, so a lost or doubled wake-up costs a query, never correctness. Inside one
process waiters are woken directly; with PostgreSQL every replica also LISTENs on one channel and each
``notify`` is sent as ``NOTIFY`` after the change committed, so a deploy made through one replica wakes the
long poll of a gateway connected to another within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from sqlalchemy import Connection, Engine, text

from edgefc.supervisor.policy import RestartPolicy

log = logging.getLogger("edgefc.cloud.notify")

CHANNEL = "edgefc_cloud"
ANY = "*"  # the topic that means "anything may have changed"
SEPARATOR = "\n"  # between the topics of one NOTIFY payload (no topic holds a newline)
PAYLOAD_MAX = 7000


class Waiter:
    """One registration for a topic: ``wait`` returns True when woken, False on timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def wake(self) -> None:
        self._event.set()


class Notifier:
    """Topic wake-ups for this process, bridged to PostgreSQL LISTEN/NOTIFY when the engine is PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.remote = engine.dialect.name == "postgresql"
        self._waiters: dict[str, set[Waiter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = asyncio.Event()
        self.closed = False
        # Called with every topic this process hears of, and with ANY after a gap in listening (caches drop all).
        self.listeners: list[Callable[[str], None]] = []

    def close(self) -> None:
        """The replica is stopping: wake every waiter, and long polls and streams end instead of waiting."""
        self.closed = True
        for topic in list(self._waiters):
            self.wake_local(topic)

    @contextlib.contextmanager
    def subscribe(self, *topics: str) -> Iterator[Waiter]:
        """Register before reading the database, so no change falls between the read and the wait."""
        waiter = Waiter()
        for topic in topics:
            self._waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            for topic in topics:
                group = self._waiters.get(topic)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._waiters[topic]

    def wake_local(self, topic: str) -> None:
        """Wake this process's waiters on ``topic`` and tell its listeners (event loop thread only)."""
        for listener in self.listeners:
            listener(topic)
        for waiter in list(self._waiters.get(topic, ())):
            waiter.wake()

    def announce(self, conn: Connection, topics: Sequence[str]) -> None:
        """Send ``topics`` to every replica with ``conn``'s transaction (PostgreSQL; nothing on SQLite)."""
        if self.remote:
            # Several topics share one NOTIFY (a batch of reports would otherwise send one per gateway), in
            # payloads under PostgreSQL's 8000-byte cap.
            chunk: list[str] = []
            size = 0
            for topic in topics:
                if chunk and size + len(topic) > PAYLOAD_MAX:
                    self._notify(conn, chunk)
                    chunk, size = [], 0
                chunk.append(topic)
                size += len(topic) + 1
            if chunk:
                self._notify(conn, chunk)

    @staticmethod
    def _notify(conn: Connection, topics: list[str]) -> None:
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": SEPARATOR.join(topics)})

    async def notify(self, *topics: str) -> None:
        """Tell every replica (this one at once) that ``topics`` changed; call after the change committed."""
        for topic in topics:
            self.wake_local(topic)
        if self.remote and topics:
            await asyncio.to_thread(self._send, topics)

    def _send(self, topics: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            self.announce(conn, topics)

    async def run(self) -> None:
        """Follow the PostgreSQL channel until cancelled, reconnecting with backoff; returns at once on SQLite."""
        if not self.remote:
            self.listening.set()
            return
        backoff = RestartPolicy(first_delay=0.2, cap=10.0, give_up_after=1 << 30)
        while True:
            try:
                async for topic in self._listen():
                    backoff.reset()
                    self.wake_local(topic)
            except Exception as exc:  # noqa: BLE001 — a lost database connection is retried, not fatal
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            # After a gap anything may have changed: wake everyone to re-read.
            for topic in [ANY, *self._waiters]:
                self.wake_local(topic)
            await asyncio.sleep(backoff.on_exit(0.0).delay)

    async def _listen(self) -> AsyncIterator[str]:
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            async for note in conn.notifies():
                for topic in note.payload.split(SEPARATOR):
                    yield topic
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())
