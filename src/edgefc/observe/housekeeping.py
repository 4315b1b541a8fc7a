"""Housekeeping of the data dir: finished async invocations and unused code bundles, pruned on a schedule.

Without it ``state.db`` grew from 22 to 441 MB in a few async calls (results are kept until read) and every
bundle ever deployed, rolled-back ones too, stayed on disk (issue 15). The gateway calls :meth:`Housekeeper.run`
in its task group; each pass runs under the deploy lock, so a bundle stored by a deploy in progress is never
collected before its deployment is recorded.

Invocations are pruned with a connection of our own to ``state.db`` (SQLite in WAL mode allows it): finished
ones past ``invocations_max_age_s``, then the oldest finished ones until their results fit
``invocations_max_bytes``. Pending and running invocations are never touched — accepted work is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgefc.config.gateway import HousekeepingConfig
from edgefc.package import BundleStore

log = logging.getLogger("edgefc.housekeeping")


class DeploymentHistory(Protocol):
    """What the housekeeper needs of the gateway's state store."""

    def bundles_in_use(self, keep_last: int = 5) -> set[str]: ...


@dataclass
class Pass:
    """What one housekeeping pass removed."""

    invocations: int = 0
    bundles: int = 0


def prune_invocations(db_path: Path, *, max_age_s: float, max_bytes: int, now: float | None = None) -> int:
    """Delete finished invocations past ``max_age_s``, then the oldest finished ones beyond ``max_bytes`` of
    results; returns how many were deleted. Raises sqlite3.Error."""
    now = time.time() if now is None else now
    conn = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        deleted = conn.execute(
            "DELETE FROM invocations WHERE state IN ('succeeded', 'failed') AND finished_at < ?",
            (now - max_age_s,),
        ).rowcount
        # Newest first, a running total of result sizes: everything past the budget goes.
        rows = conn.execute(
            "SELECT id, COALESCE(length(result), 0) + COALESCE(length(error), 0) FROM invocations "
            "WHERE state IN ('succeeded', 'failed') ORDER BY finished_at DESC"
        ).fetchall()
        total, doomed = 0, []
        for inv_id, size in rows:
            total += size
            if total > max_bytes:
                doomed.append((inv_id,))
        if doomed:
            conn.execute("BEGIN")
            conn.executemany(
                "DELETE FROM invocations WHERE id = ? AND state IN ('succeeded', 'failed')", doomed
            )
            conn.execute("COMMIT")
            deleted += len(doomed)
        if deleted:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted
    finally:
        conn.close()


def collect_bundles(bundles: BundleStore, keep: set[str]) -> int:
    """Remove every stored bundle not in ``keep``; returns how many there were."""
    before = bundles.stored()
    bundles.gc(keep)
    return len(before - keep)


class Housekeeper:
    """Prunes the data dir every ``settings.interval_s`` (and once at start)."""

    def __init__(
        self,
        settings: HousekeepingConfig,
        *,
        state_db: Path,
        history: DeploymentHistory,
        bundles: BundleStore,
        lock: asyncio.Lock,
        running_bundles: Callable[[], set[str]],
    ) -> None:
        self.settings = settings
        self.state_db = state_db
        self.history = history
        self.bundles = bundles
        self.lock = lock
        self.running_bundles = running_bundles
        self.passes = 0

    async def run_once(self) -> Pass:
        """One pass; never raises for a disk or database error (it is logged, the next pass tries again)."""
        done = Pass()
        s = self.settings
        try:
            done.invocations = await asyncio.to_thread(
                prune_invocations,
                self.state_db,
                max_age_s=s.invocations_max_age_s,
                max_bytes=s.invocations_max_bytes,
            )
        except (sqlite3.Error, OSError) as exc:
            log.warning("pruning finished invocations failed: %s", exc)
        try:
            async with self.lock:  # no deploy stores a bundle meanwhile
                keep = await asyncio.to_thread(self.history.bundles_in_use, s.keep_deployments)
                keep |= self.running_bundles()
                done.bundles = await asyncio.to_thread(collect_bundles, self.bundles, keep)
        except OSError as exc:
            log.warning("collecting unused code bundles failed: %s", exc)
        self.passes += 1
        if done.invocations or done.bundles:
            log.info(
                "housekeeping: removed %d finished invocation(s) and %d unused bundle(s)",
                done.invocations,
                done.bundles,
            )
        return done

    async def run(self) -> None:
        """Prune now and then every ``interval_s`` until cancelled."""
        while True:
            await self.run_once()
            await asyncio.sleep(self.settings.interval_s)
