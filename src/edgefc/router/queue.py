"""The durable queue: QoS 1 deliveries in SQLite (WAL), retried with backoff, dead-lettered after N failures.

A message is committed (``synchronous=FULL``) before ``put`` returns and deleted only by ``ack``. Leases are
kept in memory: after a crash every message that was in flight is simply ready again (at least once).
Concurrent ``aput``/``aack`` calls are grouped into one transaction, so many publishers share one fsync.

Every SQLite call of the ``a…`` methods runs in the queue's one thread; the event loop never waits for the
database lock or an fsync. The only things the loop touches directly are the lease set (its own small lock,
never held across I/O) and the ``version`` counter.

Full policy: the queue counts the bytes of every stored message, dead letters included; a ``put`` that would
pass ``max_bytes`` raises :class:`~edgefc.errors.QueueFull` (HTTP 503) and nothing accepted is ever dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edgefc.backoff import delay as backoff_delay
from edgefc.errors import NotFound, QueueFull
from edgefc.router.inbound import InboundIds
from edgefc.router.message import Message, SourceType
from edgefc.router.records import DeadLetter, FailOutcome, QueuedMessage, message_from_row

__all__ = ["DeadLetter", "DurableQueue", "FailOutcome", "QueuedMessage"]

T = TypeVar("T")
_OVERHEAD = 128  # rough per-row cost of ids, source and timestamps, so tiny payloads still count
_COLUMNS = "id, target, msg_id, topic, payload, source_type, source_id, qos, created_at, attempts"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, msg_id TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, source_type TEXT NOT NULL, source_id TEXT NOT NULL, qos INTEGER NOT NULL,
    created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, ready_at REAL NOT NULL DEFAULT 0,
    last_error TEXT, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_target ON messages (target, id);
CREATE TABLE IF NOT EXISTS deadletters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, msg_id TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, source_type TEXT NOT NULL, source_id TEXT NOT NULL, qos INTEGER NOT NULL,
    created_at REAL NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, failed_at REAL NOT NULL,
    size INTEGER NOT NULL);
"""


def _size(message: Message) -> int:
    return len(message.payload) + len(message.topic) + _OVERHEAD


class DurableQueue:
    """Per-target FIFO queues of QoS 1 deliveries in one SQLite file; see the module docstring.

    Raises sqlite3.Error when the file cannot be opened.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_retries: int,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a put survives power loss, not only a crash
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgefc-queue")
        self._leased: dict[int, str] = {}  # queue id → target, of messages handed out and not yet settled
        self._lease_lock = threading.Lock()  # never held across database work, so the loop may take it
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._pending_lock = threading.Lock()
        self._flush_scheduled = False
        # Bumped after every write commits and on every release: a lane that found its target empty at
        # version v need not look again (a thread hop and a SELECT) while the version is still v.
        self.version = 0
        self._bytes = sum(
            self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM {table}").fetchone()[0]
            for table in ("messages", "deadletters")
        )
        self.inbound = InboundIds(self._db)
        self._closed = False

    # -- writing ---------------------------------------------------------------------------------------

    def put(self, target: str, message: Message) -> int:
        """Store one delivery durably and return its queue id; raises QueueFull when over ``max_bytes``."""
        return self.put_many([(target, message)])[0]

    def put_many(self, items: Iterable[tuple[str, Message]]) -> list[int]:
        """Store several deliveries in one transaction (all or none); raises QueueFull when over the limit."""
        batch = list(items)
        return self._write(lambda: self._insert(batch))

    def ack(self, queue_id: int) -> None:
        """Remove a delivered message (a no-op for an unknown id: acks may repeat after a crash)."""
        self._write(lambda: self._delete(queue_id))

    def fail(self, queue_id: int, error: str) -> FailOutcome:
        """Record a failed delivery: reschedule with capped jittered backoff, or dead-letter it.

        Raises NotFound for an unknown id.
        """
        return self._write(lambda: self._fail(queue_id, error))

    async def aput(self, target: str, message: Message) -> int:
        """``put`` from the event loop, grouped with concurrent writers into one commit."""
        return (await self.aput_many([(target, message)]))[0]

    async def aput_many(self, items: Iterable[tuple[str, Message]]) -> list[int]:
        """``put_many`` from the event loop, grouped with concurrent writers into one commit."""
        batch = list(items)
        return await self._grouped(lambda: self._insert(batch))

    async def aack(self, queue_id: int) -> None:
        """``ack`` from the event loop, grouped with concurrent writers."""
        await self._grouped(lambda: self._delete(queue_id))

    async def afail(self, queue_id: int, error: str) -> FailOutcome:
        """``fail`` from the event loop."""
        return await self._grouped(lambda: self._fail(queue_id, error))

    # -- reading and leasing ---------------------------------------------------------------------------

    def lease(self, target: str, limit: int = 64) -> tuple[list[QueuedMessage], float | None]:
        """Lease the oldest messages of ``target`` in order, stopping at the first one not ready yet.

        Returns the leased messages and, when none is ready, the seconds until the head is (None when the
        target's queue is empty). Head-of-line: a message in backoff holds back the ones behind it, which
        is what keeps per-target order.
        """
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, ready_at FROM messages WHERE target = ? ORDER BY id LIMIT ?",
                (target, limit + len(self._leased)),
            ).fetchall()
        leased: list[QueuedMessage] = []
        with self._lease_lock:
            for row in rows:
                if row[0] in self._leased:
                    continue
                if row[10] > now:
                    return leased, (None if leased else row[10] - now)
                leased.append(QueuedMessage(row[0], row[1], message_from_row(row), row[9]))
                self._leased[row[0]] = target
                if len(leased) >= limit:
                    break
        return leased, None

    async def alease(self, target: str, limit: int = 64) -> tuple[list[QueuedMessage], float | None]:
        """``lease`` from the event loop."""
        return await self._in_thread(lambda: self.lease(target, limit))

    def release(self, queue_ids: Iterable[int]) -> None:
        """Give leased messages back without a verdict (delivery was cancelled); they are ready again.

        Safe on the event loop: it never waits for the database.
        """
        with self._lease_lock:
            for queue_id in queue_ids:
                self._leased.pop(queue_id, None)
            self.version += 1

    def release_all(self, target: str) -> None:
        """Give back every message of ``target`` still leased (its lane restarts); safe on the event loop."""
        with self._lease_lock:
            for queue_id in [i for i, t in self._leased.items() if t == target]:
                del self._leased[queue_id]
            self.version += 1

    def deadletters(self, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, error, failed_at FROM deadletters ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [DeadLetter(r[0], r[1], message_from_row(r), r[9], r[10], r[11]) for r in rows]

    async def adeadletters(self, limit: int = 1000) -> list[DeadLetter]:
        """``deadletters`` from the event loop."""
        return await self._in_thread(lambda: self.deadletters(limit))

    async def areplay(self, deadletter_id: int) -> int:
        """``replay`` from the event loop."""
        return await self._in_thread(lambda: self.replay(deadletter_id))

    async def adiscard(self, deadletter_id: int) -> None:
        """``discard`` from the event loop."""
        await self._in_thread(lambda: self.discard(deadletter_id))

    def replay(self, deadletter_id: int) -> int:
        """Put a dead letter back at the tail of its target's queue with a fresh retry budget.

        Returns the new queue id; raises NotFound for an unknown dead-letter id.
        """
        try:
            return self._replay(deadletter_id)
        finally:
            self.version += 1  # after the commit

    def _replay(self, deadletter_id: int) -> int:
        with self._lock, self._transaction():
            row = self._db.execute(
                f"SELECT {_COLUMNS}, size FROM deadletters WHERE id = ?", (deadletter_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no dead letter with id {deadletter_id}")
            self._db.execute("DELETE FROM deadletters WHERE id = ?", (deadletter_id,))
            cursor = self._db.execute(
                "INSERT INTO messages (target, msg_id, topic, payload, source_type, source_id, qos, created_at,"
                " size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[1:9], row[10]),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def target_of(self, queue_id: int) -> str | None:
        """The target of a queued message, or None when it is not (or no longer) queued."""
        with self._lock:
            row = self._db.execute("SELECT target FROM messages WHERE id = ?", (queue_id,)).fetchone()
        return row[0] if row else None

    def discard(self, deadletter_id: int) -> None:
        """Delete a dead letter for good; raises NotFound for an unknown id."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT size FROM deadletters WHERE id = ?", (deadletter_id,)).fetchone()
            if row is None:
                raise NotFound(f"no dead letter with id {deadletter_id}")
            self._db.execute("DELETE FROM deadletters WHERE id = ?", (deadletter_id,))
            self._bytes -= row[0]

    def stats(self) -> dict[str, Any]:
        """Depth per target, bytes used and allowed, dead-letter count, messages in flight."""
        with self._lock:
            depth = dict(self._db.execute("SELECT target, COUNT(*) FROM messages GROUP BY target").fetchall())
            dead = self._db.execute("SELECT COUNT(*) FROM deadletters").fetchone()[0]
            return {
                "targets": depth,
                "depth": sum(depth.values()),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "deadletters": dead,
                "in_flight": len(self._leased),
            }

    async def astats(self) -> dict[str, Any]:
        """``stats`` from the event loop."""
        return await self._in_thread(self.stats)

    def close(self) -> None:
        """Finish pending work and close the file."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        with self._lock:
            self._db.close()

    # -- internals -------------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _write(self, op: Callable[[], T]) -> T:
        with self._lock:
            before = self._bytes
            try:
                with self._transaction():
                    result = op()
            except BaseException:
                self._bytes = before  # the rows were rolled back, so is the count
                self.inbound.settle(committed=False)
                raise
            finally:
                self.version += 1  # after the commit (or rollback)
            self.inbound.settle(committed=True)
            return result

    def _insert(self, items: list[tuple[str, Message]]) -> list[int]:
        size = sum(_size(message) for _, message in items)
        if self._bytes + size > self.max_bytes:
            raise QueueFull(
                f"durable queue full: {self._bytes} of {self.max_bytes} bytes used, "
                f"{size} more refused; nothing accepted was dropped",
                details={"bytes": self._bytes, "max_bytes": self.max_bytes},
            )
        ids = []
        for target, m in items:
            cursor = self._db.execute(
                "INSERT INTO messages (target, msg_id, topic, payload, source_type, source_id, qos, created_at,"
                " size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    target,
                    m.id,
                    m.topic,
                    m.payload,
                    str(m.source_type),
                    m.source_id,
                    m.qos,
                    m.created_at,
                    _size(m),
                ),
            )
            assert cursor.lastrowid is not None
            ids.append(cursor.lastrowid)
        for _, m in items:
            if m.source_type in (SourceType.MQTT, SourceType.CLOUD):
                self.inbound.add(m.id)
        self._bytes += size  # _write and _flush restore the count when the transaction rolls back
        return ids

    def seen_inbound(self, msg_id: str) -> bool:
        """Whether a message with this id from a broker is committed already (safe on the event loop)."""
        return self.inbound.seen(msg_id)

    def _delete(self, queue_id: int) -> None:
        row = self._db.execute("DELETE FROM messages WHERE id = ? RETURNING size", (queue_id,)).fetchone()
        with self._lease_lock:
            self._leased.pop(queue_id, None)
        if row is not None:
            self._bytes -= row[0]

    def _fail(self, queue_id: int, error: str) -> FailOutcome:
        with self._lease_lock:
            self._leased.pop(queue_id, None)
        row = self._db.execute("SELECT attempts FROM messages WHERE id = ?", (queue_id,)).fetchone()
        if row is None:
            raise NotFound(f"no queued message with id {queue_id}")
        attempts = row[0] + 1
        if attempts > self.max_retries:
            self._db.execute(
                f"INSERT INTO deadletters ({_COLUMNS}, error, failed_at, size) "
                f"SELECT {_COLUMNS.replace('attempts', '?')}, ?, ?, size FROM messages WHERE id = ?",
                (attempts, error, time.time(), queue_id),
            )
            self._db.execute("DELETE FROM messages WHERE id = ?", (queue_id,))
            return FailOutcome.DEAD
        # Jittered so a fleet of retries does not arrive in lockstep.
        delay = backoff_delay(attempts, first=self.backoff_base, cap=self.backoff_max)
        self._db.execute(
            "UPDATE messages SET attempts = ?, ready_at = ?, last_error = ? WHERE id = ?",
            (attempts, time.time() + delay, error, queue_id),
        )
        return FailOutcome.RETRY

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _grouped(self, op: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._pending.append((op, future))
            start = not self._flush_scheduled
            self._flush_scheduled = True
        if start:
            loop.run_in_executor(self._executor, self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run every pending write in one transaction (in the queue's thread), then resolve their futures."""
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._flush_scheduled = False
        with self._lock:
            before = self._bytes
            try:
                with self._transaction():
                    for op, future in batch:
                        try:
                            done.append((future, op(), None))
                        except (QueueFull, NotFound) as exc:  # refused before writing: the rest commits
                            done.append((future, None, exc))
            except Exception as exc:  # the commit itself failed: nothing of the batch is stored
                self._bytes = before
                self.inbound.settle(committed=False)
                done = [(future, None, exc) for _, future in batch]
            else:
                self.inbound.settle(committed=True)
            self.version += 1  # after the commit (or rollback)
        loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, ROLLBACK on error (the connection runs in autocommit mode otherwise)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
