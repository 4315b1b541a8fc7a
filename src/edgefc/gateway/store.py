"""The gateway's own state on disk (SQLite, WAL): deployments and async invocations.

Every method is blocking and meant to run in a thread (``asyncio.to_thread``); one connection, one lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    bundles TEXT NOT NULL,          -- {"function": "sha256"}
    status TEXT NOT NULL,           -- applying | applied | failed | rolled_back | superseded
    message TEXT,
    created_at REAL NOT NULL,
    applied_at REAL,
    content TEXT                    -- sha256 of what the deployment runs (see Prepared.content); NULL before 0.2
);
CREATE TABLE IF NOT EXISTS invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | running | succeeded | failed
    payload BLOB,
    result BLOB,
    error TEXT,
    trigger TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS invocations_state ON invocations(state);
CREATE INDEX IF NOT EXISTS invocations_created ON invocations(created_at);
"""


class StateStore:
    """Deployments (with the applied one and the one before it) and async invocations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(deployments)")}
        if "content" not in columns:  # a data dir from before deployments recorded their content
            self._db.execute("ALTER TABLE deployments ADD COLUMN content TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- deployments -----------------------------------------------------------------------------------------

    def add_deployment(self, version: str, manifest: str, bundles: dict[str, str], content: str | None = None) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO deployments(version, manifest, bundles, status, created_at, content) VALUES (?,?,?,?,?,?)",
                (version, manifest, json.dumps(bundles), "applying", time.time(), content),
            )
            return int(cur.lastrowid or 0)

    def mark_interrupted(self) -> int:
        """Mark deployments left ``applying`` by a gateway that stopped mid-apply as failed; returns how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE deployments SET status='failed', message=? WHERE status='applying'",
                ("interrupted: the gateway stopped while applying it; the deployment before it was restored",),
            )
            return cur.rowcount

    def with_version(self, version: str) -> dict[str, Any] | None:
        """The newest deployment named ``version`` that was applied (now or before), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deployments WHERE version=? AND status IN ('applied','superseded') ORDER BY seq DESC LIMIT 1",
                (version,),
            ).fetchone()
        return self._row(row)

    def mark_deployment(self, seq: int, status: str, message: str | None = None) -> None:
        with self._lock, self._db:
            if status == "applied":
                self._db.execute("UPDATE deployments SET status='superseded' WHERE status='applied' AND seq != ?", (seq,))
                self._db.execute(
                    "UPDATE deployments SET status=?, message=?, applied_at=? WHERE seq=?", (status, message, time.time(), seq)
                )
            else:
                self._db.execute("UPDATE deployments SET status=?, message=? WHERE seq=?", (status, message, seq))

    def _row(self, row: tuple[Any, ...] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        seq, version, manifest, bundles, status, message, created_at, applied_at, content = row
        return {
            "seq": seq, "version": version, "manifest": manifest, "bundles": json.loads(bundles),
            "status": status, "message": message, "created_at": created_at, "applied_at": applied_at,
            "content": content,
        }  # fmt: skip

    def current(self) -> dict[str, Any] | None:
        """The applied deployment, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM deployments WHERE status='applied' ORDER BY seq DESC LIMIT 1").fetchone()
        return self._row(row)

    def previous(self) -> dict[str, Any] | None:
        """The deployment that was applied before the current one (the rollback target)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deployments WHERE status='superseded' ORDER BY applied_at DESC LIMIT 1"
            ).fetchone()
        return self._row(row)

    def latest(self) -> dict[str, Any] | None:
        """The newest deployment whatever its status (to report a failed apply)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM deployments ORDER BY seq DESC LIMIT 1").fetchone()
        return self._row(row)

    def bundles_in_use(self, keep_last: int = 5) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT bundles FROM deployments WHERE status IN ('applied','superseded','applying') ORDER BY seq DESC LIMIT ?",
                (keep_last,),
            ).fetchall()
        return {sha for (b,) in rows for sha in json.loads(b).values()}

    # ---- async invocations -----------------------------------------------------------------------------------

    def add_invocation(self, inv_id: str, function: str, payload: bytes, trigger: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO invocations(id, function, state, payload, trigger, created_at) VALUES (?,?,?,?,?,?)",
                (inv_id, function, "pending", payload, json.dumps(trigger), time.time()),
            )

    def start_invocation(self, inv_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE invocations SET state='running', started_at=? WHERE id=?", (time.time(), inv_id))

    def finish_invocation(self, inv_id: str, *, result: bytes | None, error: dict[str, Any] | None) -> None:
        state = "failed" if error is not None else "succeeded"
        with self._lock:
            self._db.execute(
                "UPDATE invocations SET state=?, result=?, error=?, finished_at=?, payload=NULL WHERE id=?",
                (state, result, json.dumps(error) if error else None, time.time(), inv_id),
            )

    def invocation(self, inv_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, function, state, result, error, started_at, finished_at FROM invocations WHERE id=?", (inv_id,)
            ).fetchone()
        if row is None:
            return None
        inv_id, function, state, result, error, started_at, finished_at = row
        return {
            "id": inv_id, "function": function, "state": state, "result": result,
            "error": json.loads(error) if error else None, "started_at": started_at, "finished_at": finished_at,
        }  # fmt: skip

    def invocation_payload(self, inv_id: str) -> bytes:
        """The event of an accepted async invocation (empty once it finished)."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM invocations WHERE id=?", (inv_id,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else b""

    def unfinished_invocations(self) -> list[tuple[str, str, bytes, dict[str, Any]]]:
        """Accepted async invocations that never finished (the gateway stopped): they run again."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, function, payload, trigger FROM invocations WHERE state IN ('pending','running') ORDER BY created_at"
            ).fetchall()
        return [(r[0], r[1], r[2] or b"", json.loads(r[3] or "{}")) for r in rows]

    def prune_invocations(self, older_than_s: float = 86400.0, keep: int = 100_000) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM invocations WHERE state IN ('succeeded','failed') AND finished_at < ?", (time.time() - older_than_s,)
            )
