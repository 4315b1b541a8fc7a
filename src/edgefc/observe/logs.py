"""The log store: every line a function writes, kept in SQLite in the data dir, bounded, queryable, followable.

``append`` runs on the event loop for every line and never blocks: it cleans the line, applies the
per-function rate limit, hands it to followers and puts it in a memory buffer that a writer thread flushes in
batches. The writer thread owns the one writing connection and also enforces retention (size and age), so the
disk never fills. Queries run in threads on their own connections (WAL lets them read while it writes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from edgefc.errors import Busy
from edgefc.observe import logdb
from edgefc.observe.entry import (
    GATEWAY_FUNCTION,
    Level,
    LogEntry,
    LogFilter,
    StoredEntry,
    Stream,
    clean_message,
)
from edgefc.observe.follow import Subscription
from edgefc.observe.gatewaylog import GatewayLogHandler
from edgefc.observe.ratelimit import TokenBucket

__all__ = ["GATEWAY_FUNCTION", "GatewayLogHandler", "Level", "LogEntry", "LogFilter", "LogStore", "Stream"]

MiB = 1024 * 1024
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

_log = logging.getLogger(__name__)
FUTURE_SLACK_S = 300.0  # clocks of the gateway and a worker may differ a little, never by more


def stamp(value: Any) -> float:
    """The time a line is stored with: the sender's if it is a plausible epoch, else the gateway's clock now.

    A worker's frame is the function's to write: NaN, infinities, 1e300, negative or far-future times, or not
    a number at all, would fail a write batch or every later query; they get the gateway's time instead.
    """
    now = time.time()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return now
    t = float(value)
    if not math.isfinite(t) or t < 0 or t > now + FUTURE_SLACK_S:
        return now
    return t


class LogStore:
    """Per-function log lines in ``path`` (SQLite, WAL), bounded by size and age, rate-limited per function."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes_per_function: int = 64 * MiB,
        max_age_s: float = 7 * 86400.0,
        rate_limit_lines_per_s: int = 2000,
        max_line_bytes: int = 16384,
        max_pending: int = 100_000,
        flush_interval_s: float = 0.1,
        retention_interval_s: float = 60.0,
        report_interval_s: float = 10.0,
        subscriber_queue: int = 1000,
        max_followers: int = 64,
        full_text: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_bytes_per_function = max_bytes_per_function
        self.max_age_s = max_age_s
        self.rate_limit = rate_limit_lines_per_s
        self.max_line_bytes = max_line_bytes
        self.max_pending = max_pending
        self.flush_interval_s = flush_interval_s
        self.retention_interval_s = retention_interval_s
        self.report_interval_s = report_interval_s
        self.subscriber_queue = subscriber_queue
        self.max_followers = max_followers
        self._want_fts = full_text
        self.fts = False
        self._pending: collections.deque[StoredEntry] = collections.deque()
        self._next_id = 1
        self._buckets: dict[str, TokenBucket] = {}
        self._dropped: dict[str, int] = {}
        self._unreported: dict[str, int] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._sizes: dict[str, int] = {}
        self._written_id = 0
        self._cond = threading.Condition()
        self._db_lock = threading.Lock()  # the writing connection is used by the writer and enforce_retention
        self._wake = threading.Event()
        self._stop = False
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._reporter: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.write_errors = 0

    # -- life cycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the database and start the writer thread; raises sqlite3.Error if it cannot."""
        self.loop = asyncio.get_running_loop()
        base = await asyncio.to_thread(self._open)
        # Lines appended before start got provisional ids from 1; move them past what the file holds.
        for entry in self._pending:
            entry.id += base
        self._next_id += base
        self._written_id = base
        self._writer = threading.Thread(target=self._write_loop, name="edgefc-log-writer", daemon=True)
        self._writer.start()
        self._reporter = asyncio.create_task(self._report_loop(), name="log-drop-reporter")

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = logdb.connect(self.path)
        self.fts = logdb.create_schema(conn, fts=self._want_fts)
        self._sizes = logdb.sizes(conn)
        self._conn = conn
        return logdb.max_id(conn)

    async def close(self) -> None:
        """Write everything buffered, stop the writer, end every follower."""
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
            self._reporter = None
            self._report_drops()
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            self._stop = True
            self._wake.set()
            await asyncio.to_thread(writer.join)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    # -- appending (event loop) ---------------------------------------------------------------------------

    def append(self, entry: LogEntry) -> bool:
        """Take one line; False when the rate limit or a full buffer dropped it (counted). Never blocks."""
        now = time.monotonic()
        bucket = self._buckets.get(entry.function)
        if bucket is None:
            bucket = self._buckets[entry.function] = TokenBucket(float(self.rate_limit), now)
        if not bucket.take(now) or len(self._pending) >= self.max_pending:
            self._count_drop(entry.function)
            return False
        self._enqueue(entry)
        return True

    def _enqueue(self, entry: LogEntry) -> StoredEntry:
        stored = StoredEntry(
            id=self._next_id,
            time=stamp(entry.time),
            function=entry.function,
            instance=entry.instance or "",
            request_id=entry.request_id or "",
            level=Level.coerce(entry.level),
            stream=entry.stream or Stream.LOG.value,
            message=clean_message(entry.message, self.max_line_bytes),
        )
        self._next_id += 1
        self._pending.append(stored)
        if len(self._pending) >= 2000:
            self._wake.set()
        for sub in self._subscribers.get(stored.function, ()):
            sub.offer(stored)
        return stored

    def _count_drop(self, function: str, count: int = 1) -> None:
        self._dropped[function] = self._dropped.get(function, 0) + count
        self._unreported[function] = self._unreported.get(function, 0) + count

    def count_dropped(self, function: str, count: int) -> None:
        """Count ``count`` lines of ``function`` its worker dropped over the rate limit (never sent)."""
        self._count_drop(function, min(count, 1 << 62))

    def dropped(self, function: str) -> int:
        """Lines of ``function`` dropped since start (rate limit or full buffer)."""
        return self._dropped.get(function, 0)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            self._report_drops()

    def _report_drops(self) -> None:
        unreported, self._unreported = self._unreported, {}
        for function, count in unreported.items():
            self._enqueue(
                LogEntry(
                    time=time.time(),
                    function=function,
                    instance="",
                    request_id="",
                    level="warning",
                    stream=Stream.GATEWAY.value,
                    message=f"{count} lines dropped by the rate limit ({self.rate_limit} lines/s per function)",
                )
            )

    # -- following ----------------------------------------------------------------------------------------

    def check_follow(self) -> None:
        """Raise Busy when ``max_followers`` already follow: each holds a queue, and every line is offered to
        each (1 000 followers that never read once slowed invokes to 400 ms and kept 1.4 GB)."""
        if self.subscriber_count() >= self.max_followers:
            raise Busy(f"{self.max_followers} log followers already; close one (or query without follow=1)")

    def subscribe(self, function: str, filt: LogFilter | None = None) -> Subscription:
        """Follow new entries of ``function``; close the subscription (or use ``async with``) when done.

        Raises Busy when ``max_followers`` already follow.
        """
        self.check_follow()
        sub = Subscription(function, filt or LogFilter(), self.subscriber_queue, self._unsubscribe)
        self._subscribers.setdefault(function, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.function)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.function]

    def subscriber_count(self, function: str | None = None) -> int:
        """How many followers there are (of ``function``, or in all)."""
        if function is not None:
            return len(self._subscribers.get(function, ()))
        return sum(len(s) for s in self._subscribers.values())

    @property
    def last_id(self) -> int:
        """The id of the newest entry appended so far."""
        return self._next_id - 1

    # -- writing (writer thread) ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every line appended so far is on disk (and visible to queries)."""
        target = self._next_id - 1
        if self._writer is None or self._written_id >= target:
            return
        self._wake.set()
        await asyncio.to_thread(self._wait_written, target)

    def _wait_written(self, target: int) -> None:
        with self._cond:
            while self._written_id < target and self._writer is not None and self._writer.is_alive():
                self._cond.wait(0.5)

    def _write_loop(self) -> None:
        next_retention = time.monotonic()
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop
            self._write_pending()
            if time.monotonic() >= next_retention:
                with self._db_lock:
                    self._guarded(self._enforce_limits)
                next_retention = time.monotonic() + self.retention_interval_s
            if stopping and not self._pending:
                return

    def _write_pending(self) -> None:
        while self._pending:
            batch: list[StoredEntry] = []
            while self._pending and len(batch) < 5000:
                batch.append(self._pending.popleft())
            with self._db_lock:
                lost = [] if self._guarded(self._insert, batch) else batch
                if len(lost) > 1:
                    # One bad row must not cost the others (a raw frame's NaN time once lost 430 lines of
                    # another function): retry one by one, and lose only the rows that fail alone.
                    lost = [entry for entry in lost if not self._quiet(self._insert, [entry])]
            # What is lost (disk full, I/O error) is counted against each function, and the writer goes on.
            for entry in lost:
                self._dropped[entry.function] = self._dropped.get(entry.function, 0) + 1
            with self._cond:
                self._written_id = batch[-1].id
                self._cond.notify_all()

    def _insert(self, batch: list[StoredEntry]) -> bool:
        assert self._conn is not None
        added = logdb.insert(self._conn, batch, fts=self.fts)
        for function, size in added.items():
            self._sizes[function] = self._sizes.get(function, 0) + size
            # Trim in chunks (down to 90 %) once 10 % over, so a chatty function costs one delete per chunk.
            if self._sizes[function] > self.max_bytes_per_function * 1.1:
                self._trim(function)
        return True

    def _trim(self, function: str) -> None:
        assert self._conn is not None
        total = self._sizes[function]
        freed = logdb.trim(self._conn, function, total - int(self.max_bytes_per_function * 0.9))
        self._sizes[function] = max(0, total - freed)

    def _enforce_limits(self) -> None:
        assert self._conn is not None
        freed = logdb.delete_older(self._conn, list(self._sizes), time.time() - self.max_age_s)
        for function, size in freed.items():
            self._sizes[function] = max(0, self._sizes.get(function, 0) - size)
        for function, total in list(self._sizes.items()):
            if total > self.max_bytes_per_function:
                self._trim(function)

    def _quiet(self, call: Any, *args: Any) -> bool:
        try:
            call(*args)
            return True
        except sqlite3.Error:
            self.write_errors += 1
            return False

    def _guarded(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except sqlite3.Error as exc:
            self.write_errors += 1
            _log.error("log store write failed: %s", exc)
            return None

    async def enforce_retention(self) -> None:
        """Apply the age and size limits now (they also run every ``retention_interval_s``) after flushing."""
        await self.flush()
        await asyncio.to_thread(self._locked_limits)

    def _locked_limits(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._guarded(self._enforce_limits)

    def size_bytes(self, function: str) -> int:
        """Bytes currently charged to ``function`` (what size retention compares with its limit)."""
        return self._sizes.get(function, 0)

    def bulk_insert(self, entries: Iterable[StoredEntry]) -> None:
        """Load entries straight into the file (tools and benchmarks); only before ``start`` or after ``close``."""
        conn = logdb.connect(self.path)
        try:
            fts = logdb.create_schema(conn, fts=self._want_fts)
            logdb.insert(conn, entries, fts=fts)
        finally:
            conn.close()

    # -- querying (threads) --------------------------------------------------------------------------------

    def query(
        self,
        function: str,
        *,
        since: float | None = None,
        until: float | None = None,
        level: Level | str = Level.DEBUG,
        q: str | None = None,
        request_id: str | None = None,
        limit: int = DEFAULT_LIMIT,
        order: Literal["asc", "desc"] = "desc",
    ) -> list[dict[str, Any]]:
        """Entries of ``function`` in the CONTRACT §4 shape; blocking (use ``aquery`` on the loop).

        Raises BadRequest for an unknown level.
        """
        minimum = level if isinstance(level, Level) else Level.parse(level)
        filt = LogFilter(minimum, q or None, request_id or None)
        rows = self.select(
            function, since=since, until=until, filt=filt, limit=limit, ascending=order == "asc"
        )
        return [row.to_dict() for row in rows]

    def select(
        self,
        function: str,
        *,
        since: float | None,
        until: float | None,
        filt: LogFilter,
        limit: int,
        ascending: bool,
        after_id: int | None = None,
    ) -> list[StoredEntry]:
        """Stored entries of ``function`` matching ``filt``; blocking."""
        conn = logdb.connect(self.path, reader=True)
        try:
            return logdb.select(
                conn,
                function,
                since=since,
                until=until,
                filt=filt,
                limit=max(0, min(limit, MAX_LIMIT)),
                ascending=ascending,
                fts=self.fts,
                after_id=after_id,
            )
        finally:
            conn.close()

    async def aquery(self, function: str, **kwargs: Any) -> list[dict[str, Any]]:
        """``query`` in a thread, after flushing so that what was appended is seen."""
        await self.flush()
        return await asyncio.to_thread(lambda: self.query(function, **kwargs))

    async def aselect(self, function: str, **kwargs: Any) -> list[StoredEntry]:
        """``select`` in a thread, after flushing."""
        await self.flush()
        return await asyncio.to_thread(lambda: self.select(function, **kwargs))
