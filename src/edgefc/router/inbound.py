"""The ids of the latest QoS 1 messages the router took from brokers, to recognise a broker's second copy.

A broker sends a QoS 1 message again (DUP) when the gateway did not acknowledge it before the connection
ended, e.g. when the gateway was SIGKILLed between committing the message and sending its PUBACK. Ids
(``message.redelivery_stable_id``) are written in the same transaction as the message's deliveries and
remembered only once that transaction committed, so a copy is dropped only when the first one is durable.
Bounded well below the 65 535 packet ids a session cycles through, so an id never names two different
messages while it is remembered.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3

REMEMBERED = 10_000
_PRUNE_EVERY = 1000


class InboundIds:
    """The remembered ids (in memory and in the queue's database); used by the queue under its lock."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute("CREATE TABLE IF NOT EXISTS inbound (msg_id TEXT PRIMARY KEY)")
        rows = db.execute("SELECT msg_id FROM inbound ORDER BY rowid DESC LIMIT ?", (REMEMBERED,)).fetchall()
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict((r[0], None) for r in rows[::-1])
        self._uncommitted: dict[str, None] = {}
        self._since_prune = 0

    def seen(self, msg_id: str) -> bool:
        """Whether ``msg_id`` is committed already (a dict lookup: safe on the event loop)."""
        return msg_id in self._ids

    def add(self, msg_id: str) -> None:
        """Record ``msg_id`` inside the current transaction."""
        if msg_id not in self._uncommitted:
            self._db.execute("INSERT OR IGNORE INTO inbound (msg_id) VALUES (?)", (msg_id,))
            self._uncommitted[msg_id] = None

    def settle(self, *, committed: bool) -> None:
        """After the transaction: remember its ids if it committed, forget them if it rolled back."""
        pending, self._uncommitted = self._uncommitted, {}
        if not committed:
            return
        for msg_id in pending:
            self._ids[msg_id] = None
        while len(self._ids) > REMEMBERED:
            self._ids.popitem(last=False)
        self._since_prune += len(pending)
        if self._since_prune >= _PRUNE_EVERY:
            self._since_prune = 0
            with contextlib.suppress(sqlite3.Error):  # housekeeping: a failure only keeps rows longer
                self._db.execute(
                    "DELETE FROM inbound WHERE rowid <= (SELECT MAX(rowid) FROM inbound) - ?", (REMEMBERED,)
                )
