"""The log store: append, query filters, retention, rate limit, bad lines, follow, the gateway's own log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefc.errors import BadRequest
from edgefc.observe.logs import GATEWAY_FUNCTION, GatewayLogHandler, Level, LogEntry, LogFilter, LogStore


def entry(
    function: str = "alarm",
    message: str | bytes = "hello",
    *,
    t: float | None = None,
    level: str = "info",
    request_id: str = "",
    stream: str = "stdout",
) -> LogEntry:
    return LogEntry(
        time=time.time() if t is None else t,
        function=function,
        instance="alarm-1",
        request_id=request_id,
        level=level,
        stream=stream,
        message=message,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LogStore]:
    s = LogStore(tmp_path / "logs.db")
    await s.start()
    yield s
    await s.close()


async def test_query_filters_order_limit(store: LogStore) -> None:
    base = time.time() - 3600
    for i in range(100):
        level = ["debug", "info", "warning", "error", "critical"][i % 5]
        store.append(entry(message=f"line {i}", t=base + i, level=level, request_id=f"r{i % 10}"))
    store.append(entry("other", "not mine", t=base + 5))

    newest = await store.aquery("alarm", limit=3)
    assert [e["message"] for e in newest] == ["line 99", "line 98", "line 97"]
    assert set(newest[0]) == {"time", "function", "instance", "request_id", "level", "stream", "message"}
    assert newest[0]["time"].endswith("Z") and newest[0]["function"] == "alarm"

    oldest = await store.aquery("alarm", order="asc", limit=2)
    assert [e["message"] for e in oldest] == ["line 0", "line 1"]

    window = await store.aquery("alarm", since=base + 10, until=base + 19, order="asc")
    assert [e["message"] for e in window] == [f"line {i}" for i in range(10, 20)]

    errors = await store.aquery("alarm", level="error")
    assert {e["level"] for e in errors} == {"error", "critical"} and len(errors) == 40
    warnings = await store.aquery("alarm", level=Level.WARNING)
    assert len(warnings) == 60

    by_request = await store.aquery("alarm", request_id="r3", order="asc")
    assert [e["message"] for e in by_request] == [f"line {i}" for i in range(3, 100, 10)]

    text = await store.aquery("alarm", q="LINE 4", order="asc")  # case-insensitive substring
    assert [e["message"] for e in text] == ["line 4"] + [f"line {i}" for i in range(40, 50)]
    # A range of under 6 h is scanned with LIKE instead of the trigram index: same answer.
    assert await store.aquery("alarm", q="LINE 4", order="asc", since=base - 1) == text
    short = await store.aquery("alarm", q="99")  # shorter than a trigram: LIKE path
    assert [e["message"] for e in short] == ["line 99"]
    assert await store.aquery("alarm", q="no such text") == []
    assert await store.aquery("nobody") == []

    with pytest.raises(BadRequest, match="level"):
        await store.aquery("alarm", level="loud")


async def test_fts_in_use_and_combined_filters(store: LogStore) -> None:
    assert store.fts, "this SQLite has FTS5 with trigrams; the store should use it"
    now = time.time()
    store.append(entry(message="connection refused by broker", t=now - 5, level="error", request_id="a"))
    store.append(entry(message="connection ok", t=now - 4, level="info", request_id="a"))
    store.append(entry(message='odd "quotes" and 100% _under_', t=now - 3))
    got = await store.aquery("alarm", q="connection", level="error")
    assert [e["message"] for e in got] == ["connection refused by broker"]
    got = await store.aquery("alarm", q="connection", request_id="a", order="asc")
    assert len(got) == 2
    assert len(await store.aquery("alarm", q='"quotes" and 100% _')) == 1
    assert await store.aquery("alarm", q="100%x") == []


async def test_lines_appended_before_start_are_kept(tmp_path: Path) -> None:
    first = LogStore(tmp_path / "logs.db")
    await first.start()
    first.append(entry(message="from the first run"))
    await first.close()
    second = LogStore(tmp_path / "logs.db")
    second.append(entry(message="early"))  # the gateway logs before the store is open
    await second.start()
    try:
        second.append(entry(message="late"))
        rows = await second.aquery("alarm", order="asc")
        assert [r["message"] for r in rows] == ["from the first run", "early", "late"]
    finally:
        await second.close()


async def test_multiline_message_kept_intact(store: LogStore) -> None:
    trace = 'Traceback (most recent call last):\n  File "index.py", line 3, in handler\nValueError: bad\n'
    store.append(entry(message=trace, level="error", request_id="req-1", stream="stderr"))
    (got,) = await store.aquery("alarm", request_id="req-1")
    assert got["message"] == trace and got["level"] == "error" and got["stream"] == "stderr"


async def test_bad_and_huge_lines_are_stored_marked(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", max_line_bytes=1000)
    await store.start()
    try:
        store.append(entry(message=b"caf\xe9 \xff\xfe end"))
        store.append(entry(message="lone \udcff surrogate"))
        store.append(entry(message="nul\x00byte"))
        store.append(entry(message="é" * 3_000_000))  # 6 MB of UTF-8
        rows = await store.aquery("alarm", order="asc")
    finally:
        await store.close()
    messages = [r["message"] for r in rows]
    assert messages[0] == "caf\\xe9 \\xff\\xfe end"
    assert messages[1] == "lone \\udcff surrogate"
    assert messages[2] == "nul\\x00byte"
    assert messages[3].startswith("é" * 500) and messages[3].endswith("[truncated: 6000000 bytes in all]")
    assert len(messages[3].encode()) < 1100


async def test_rate_limit_drops_are_counted_and_reported(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", rate_limit_lines_per_s=100, report_interval_s=0.2)
    await store.start()
    try:
        kept = sum(store.append(entry(message=f"spam {i}")) for i in range(1000))
        store.append(entry("quiet", "unaffected"))
        assert 100 <= kept < 150  # one second's burst, plus what refilled while appending
        assert store.dropped("alarm") == 1000 - kept and store.dropped("quiet") == 0
        deadline = time.monotonic() + 5
        report: list[dict[str, object]] = []
        while not report and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            report = await store.aquery("alarm", q="dropped by the rate limit")
        assert report, "a gateway entry reports the drops"
        assert report[0]["stream"] == "gateway" and report[0]["level"] == "warning"
        assert str(report[0]["message"]).startswith(f"{1000 - kept} lines dropped")
        assert len(await store.aquery("quiet")) == 1
    finally:
        await store.close()


async def test_retention_by_age(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", max_age_s=3600)
    await store.start()
    try:
        now = time.time()
        for i in range(50):
            store.append(entry(message=f"old {i}", t=now - 7200 + i))
            store.append(entry(message=f"new {i}", t=now - 60 + i))
        await store.enforce_retention()
        rows = await store.aquery("alarm", limit=1000)
        assert len(rows) == 50 and all(r["message"].startswith("new") for r in rows)
        assert await store.aquery("alarm", q="old") == []  # the text index forgot them too
    finally:
        await store.close()


async def test_retention_by_size_keeps_newest(tmp_path: Path) -> None:
    limit = 200_000
    store = LogStore(tmp_path / "logs.db", max_bytes_per_function=limit, rate_limit_lines_per_s=10**6)
    await store.start()
    try:
        for i in range(5000):  # ~600 KB of text, three times the cap
            store.append(entry(message=f"{i:06d} " + "x" * 100))
            store.append(entry("small", f"line {i}")) if i < 10 else None
        await store.flush()
        assert store.size_bytes("alarm") <= limit * 1.1
        await store.enforce_retention()
        assert store.size_bytes("alarm") <= limit
        rows = await store.aquery("alarm", limit=10_000, order="asc")
        assert rows[-1]["message"].startswith("004999")  # newest kept, oldest gone
        assert not rows[0]["message"].startswith("000000")
        assert len(await store.aquery("small")) == 10  # other functions untouched
    finally:
        await store.close()
    # What the store charges matches what the file says after a restart.
    reopened = LogStore(tmp_path / "logs.db")
    await reopened.start()
    try:
        assert reopened.size_bytes("alarm") == store.size_bytes("alarm")
        reopened.append(entry(message="after restart"))
        assert (await reopened.aquery("alarm", limit=1))[0]["message"] == "after restart"
    finally:
        await reopened.close()


async def test_follow_delivers_new_lines_and_unsubscribes(store: LogStore) -> None:
    sub = store.subscribe("alarm", LogFilter(level=Level.WARNING))
    assert store.subscriber_count("alarm") == 1
    store.append(entry(message="quiet", level="info"))
    store.append(entry(message="loud", level="error"))
    store.append(entry("other", "elsewhere", level="error"))
    got = await asyncio.wait_for(anext(sub), 2)
    assert got.message == "loud" and got.to_dict()["level"] == "error"
    assert await sub.get(0.05) is None
    sub.close()
    assert store.subscriber_count() == 0
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_slow_follower_loses_lines_not_memory(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", subscriber_queue=10)
    await store.start()
    try:
        async with store.subscribe("alarm") as sub:
            for i in range(50):
                store.append(entry(message=f"l{i}"))
            got = [(await anext(sub)).message for _ in range(11)]
            assert got[0].startswith("40 lines skipped")
            assert got[1:] == [f"l{i}" for i in range(10)]
        assert store.subscriber_count() == 0
    finally:
        await store.close()


async def test_close_ends_followers_and_flushes(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", flush_interval_s=30)
    await store.start()
    sub = store.subscribe("alarm")
    store.append(entry(message="last words"))
    await store.close()
    assert [e.message async for e in sub] == ["last words"]
    conn = sqlite3.connect(tmp_path / "logs.db")
    assert conn.execute("SELECT message FROM logs").fetchall() == [("last words",)]
    conn.close()


async def test_gateway_log_handler(store: LogStore) -> None:
    logger = logging.getLogger("edgefc.test.gateway")
    logger.propagate = False
    handler = GatewayLogHandler(store)
    logger.addHandler(handler)
    try:
        logger.warning("function %s restarted", "alarm", extra={"request_id": "r-9"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("crashed")
        await asyncio.to_thread(logger.error, "from a thread")
        deadline = time.monotonic() + 5
        rows: list[dict[str, object]] = []
        while len(rows) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            rows = await store.aquery(GATEWAY_FUNCTION, order="asc")
    finally:
        logger.removeHandler(handler)
    assert [r["stream"] for r in rows] == ["gateway"] * 3
    assert rows[0]["message"] == "function alarm restarted" and rows[0]["request_id"] == "r-9"
    assert "RuntimeError: boom" in str(rows[1]["message"]) and rows[1]["level"] == "error"
    assert rows[2]["message"] == "from a thread"
