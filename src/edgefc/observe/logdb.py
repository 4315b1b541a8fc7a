"""The SQLite side of the log store: schema, batch insert, indexed queries and retention deletes.

Everything here is synchronous and runs in the store's writer thread or in a query thread, never on the loop.
Full-text search uses an FTS5 trigram index where SQLite has one, so ``q`` means "contains this text"
(case-insensitive, like grep -i) whether the index answers or a LIKE scan does.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from edgefc.observe.entry import Level, LogFilter, StoredEntry

# What an entry is charged, fitted to the file size measured here with full-text on (±15 % for lines of
# 20-400 bytes): the trigram index costs about half the text again, the row and three indexes ~120 bytes.
TEXT_FACTOR = 1.75
ROW_OVERHEAD = 120
FTS_MIN_QUERY = 3  # a trigram index cannot answer shorter text; those fall back to LIKE
FTS_MIN_SPAN_S = 6 * 3600.0  # a shorter time range is scanned faster by LIKE than common text is looked up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    function TEXT NOT NULL,
    instance TEXT NOT NULL,
    request_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_function_time ON logs(function, time);
CREATE INDEX IF NOT EXISTS logs_function_level_time ON logs(function, level, time);
CREATE INDEX IF NOT EXISTS logs_request ON logs(request_id, time) WHERE request_id != '';
"""

_FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
    message, content='logs', content_rowid='id', tokenize='trigram', detail='none');
CREATE TRIGGER IF NOT EXISTS logs_fts_delete AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, message) VALUES ('delete', old.id, old.message);
END;
"""

_COLUMNS = "id, time, function, instance, request_id, level, stream, message"


def connect(path: Path, *, reader: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode (transactions are explicit BEGIN/COMMIT); ``reader`` skips the set-up."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    if reader:
        conn.execute("PRAGMA query_only=ON")
        return conn
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL loses at most the last transactions on power loss, never corrupts: fine for logs.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_size_limit=16777216")
    return conn


def fts_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34+)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.fts_probe USING fts5(x, tokenize='trigram')")
        conn.execute("DROP TABLE temp.fts_probe")
    except sqlite3.OperationalError:
        return False
    return True


def create_schema(conn: sqlite3.Connection, *, fts: bool) -> bool:
    """Create tables and indexes if missing; returns whether full-text search is in use."""
    conn.executescript(_SCHEMA)
    # Rows are indexed per batch by insert() (five times faster than a row trigger), never by a trigger.
    conn.execute("DROP TRIGGER IF EXISTS logs_fts_insert")
    has_fts = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'logs_fts'").fetchone() is not None
    if fts and not has_fts and fts_available(conn):
        conn.executescript(_FTS_SCHEMA)
        conn.execute("INSERT INTO logs_fts(logs_fts) VALUES ('rebuild')")
        has_fts = True
    return has_fts


def max_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM logs").fetchone()[0])


def sizes(conn: sqlite3.Connection) -> dict[str, int]:
    """Bytes charged to each function, for size retention."""
    return {f: int(s) for f, s in conn.execute("SELECT function, SUM(size) FROM logs GROUP BY function")}


def entry_size(entry: StoredEntry) -> int:
    """Bytes charged for one entry: about what it takes on disk with its index entries."""
    text = entry.message
    n = len(text) if text.isascii() else len(text.encode("utf-8"))
    return int(n * TEXT_FACTOR) + len(entry.instance) + len(entry.request_id) + ROW_OVERHEAD


def insert(conn: sqlite3.Connection, entries: Iterable[StoredEntry], *, fts: bool) -> dict[str, int]:
    """Insert a batch (increasing ids) in one transaction, with its text index; returns bytes added per function.

    Raises sqlite3.Error (the batch is then not stored at all).
    """
    added: dict[str, int] = {}
    rows = []
    for e in entries:
        size = entry_size(e)
        added[e.function] = added.get(e.function, 0) + size
        rows.append(
            (e.id, e.time, e.function, e.instance, e.request_id, int(e.level), e.stream, e.message, size)
        )
    if not rows:
        return added
    conn.execute("BEGIN")
    try:
        conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if fts:
            conn.execute(
                "INSERT INTO logs_fts(rowid, message) SELECT id, message FROM logs WHERE id BETWEEN ? AND ?",
                (rows[0][0], rows[-1][0]),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return added


def select(
    conn: sqlite3.Connection,
    function: str,
    *,
    since: float | None,
    until: float | None,
    filt: LogFilter,
    limit: int,
    ascending: bool,
    fts: bool,
    after_id: int | None = None,
) -> list[StoredEntry]:
    """Entries of one function matching the filter, by time then id, at most ``limit``."""
    where = ["function = ?"]
    args: list[object] = [function]
    index = "logs_function_time"
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    if until is not None:
        where.append("time <= ?")
        args.append(until)
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    if filt.level > Level.DEBUG:
        where.append("level >= ?")
        args.append(int(filt.level))
        if filt.level >= Level.ERROR:
            # Errors are the rare lines a user hunts for; reach them by level instead of walking every line.
            index = "logs_function_level_time"
    if filt.request_id is not None:
        # The literal != '' lets SQLite use the partial index on request_id.
        where.append("request_id = ? AND request_id != ''")
        args.append(filt.request_id)
        index = "logs_request"
    if filt.q:
        span = (until if until is not None else time.time()) - since if since is not None else math.inf
        if fts and len(filt.q) >= FTS_MIN_QUERY and index == "logs_function_time" and span > FTS_MIN_SPAN_S:
            # The index (detail=none: rowids only, a third of the size) finds rows holding every trigram;
            # the LIKE below keeps those that hold the text itself.
            where.append("id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)")
            args.append(_trigram_query(filt.q))
            index = ""
        where.append("message LIKE ? ESCAPE '\\'")
        args.append("%" + _like_escape(filt.q) + "%")
    direction = "ASC" if ascending else "DESC"
    hint = f" INDEXED BY {index}" if index else ""
    sql = (
        f"SELECT {_COLUMNS} FROM logs{hint} WHERE {' AND '.join(where)} "
        f"ORDER BY time {direction}, id {direction} LIMIT ?"
    )
    args.append(limit)
    return [
        StoredEntry(row[0], row[1], row[2], row[3], row[4], Level.coerce(row[5]), row[6], row[7])
        for row in conn.execute(sql, args)
    ]


def _trigram_query(text: str) -> str:
    grams = sorted({text[i : i + 3] for i in range(len(text) - 2)})
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def delete_older(conn: sqlite3.Connection, functions: Iterable[str], cutoff: float) -> dict[str, int]:
    """Delete every entry older than ``cutoff``; returns the bytes freed per function."""
    freed: dict[str, int] = {}
    for function in functions:
        conn.execute("BEGIN")
        try:
            (size,) = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM logs WHERE function = ? AND time < ?", (function, cutoff)
            ).fetchone()
            if size:
                conn.execute("DELETE FROM logs WHERE function = ? AND time < ?", (function, cutoff))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if size:
            freed[function] = int(size)
    return freed


def trim(conn: sqlite3.Connection, function: str, excess: int) -> int:
    """Delete the oldest entries of ``function`` worth at least ``excess`` bytes; returns the bytes freed."""
    total = 0
    cut: float | None = None
    for stamp, size in conn.execute(
        "SELECT time, size FROM logs INDEXED BY logs_function_time WHERE function = ? ORDER BY time",
        (function,),
    ):
        total += size
        if total >= excess:
            cut = stamp
            break
    if cut is None:
        cut = float("inf")
    conn.execute("BEGIN")
    try:
        (freed,) = conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM logs WHERE function = ? AND time <= ?", (function, cut)
        ).fetchone()
        conn.execute("DELETE FROM logs WHERE function = ? AND time <= ?", (function, cut))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(freed)
