"""Log frames are the function's to write: a NaN or 1e300 ``time`` must not fail a write batch nor any later
query (issue 15: NaN lost 430 of 1 640 lines of another function; 1e300 made every log query answer 500)."""

from __future__ import annotations

import math
import socket
import sqlite3
import time
from pathlib import Path

from edgefc.observe.logs import LogEntry, LogStore, stamp
from tests.e2e.gateway_harness import GatewayProcess, fn

HOSTILE = r"""
from edgefc.worker.main import current

def handler(event, context):
    conn = current().conn
    for i in range(40):
        print(f"before {i}")
    for bad in (float("nan"), 1e300, float("-inf"), -5.0, "yesterday", None):
        conn.send({"t": "log", "time": bad, "level": "info", "stream": "stdout", "request_id": "", "message": f"raw {bad!r}"})
    for i in range(40):
        print(f"after {i}")
    return "done"
"""

NEIGHBOUR = r"""
def handler(event, context):
    for i in range(40):
        print(f"neighbour {i}")
    return "ok"
"""


def test_bad_log_times_lose_nothing_and_break_no_query(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data").start()
    try:
        gw.deploy(
            {"functions": [fn("hostile"), fn("neighbour")]}, {"hostile": HOSTILE, "neighbour": NEIGHBOUR}
        )
        assert gw.client is not None
        for _ in range(3):
            assert gw.invoke("hostile").status_code == 200
            assert gw.invoke("neighbour").status_code == 200

        def lines(name: str) -> list[dict[str, object]]:
            response = gw.client.get(f"/v1/functions/{name}/logs", params={"limit": 1000, "since": "1h"})  # type: ignore[union-attr]
            assert response.status_code == 200, response.text
            return response.json()["entries"]  # type: ignore[no-any-return]

        gw.wait_for(
            lambda: len([e for e in lines("hostile") if "after 39" in str(e["message"])]) == 3,
            what="all lines",
        )
        hostile = lines("hostile")
        messages = [str(e["message"]) for e in hostile]
        assert sum(m.startswith("before ") for m in messages) == 120
        assert sum(m.startswith("after ") for m in messages) == 120
        assert sum(m.startswith("raw ") for m in messages) == 18  # stored, with the gateway's time
        now = time.time()
        assert all(str(e["time"]).startswith(time.strftime("%Y-", time.gmtime(now))) for e in hostile)
        assert len([e for e in lines("neighbour") if str(e["message"]).startswith("neighbour ")]) == 120
        # Time-range queries and text search still answer.
        assert (
            gw.client.get("/v1/functions/hostile/logs", params={"q": "raw", "until": "0s"}).status_code == 200
        )
    finally:
        gw.stop()


def test_stamp_keeps_plausible_times_only() -> None:
    now = time.time()
    assert stamp(now - 3600) == now - 3600
    for bad in (math.nan, math.inf, -math.inf, 1e300, -1.0, "x", None, True, now + 86400):
        assert abs(stamp(bad) - now) < 5


async def test_a_failing_row_costs_only_itself(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", flush_interval_s=0.01)
    await store.start()
    try:
        # Another writer took the id the 6th line will get: that row fails (primary key), the batch with it.
        with sqlite3.connect(tmp_path / "logs.db") as other:
            other.execute("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (store.last_id + 6, time.time(), "g", "", "", 20, "stdout", "squatter", 8))  # fmt: skip
        for i in range(10):
            assert store.append(LogEntry(time.time(), "f", "i", "", "info", "stdout", f"line {i}"))
        await store.flush()
        kept = [e["message"] for e in await store.aquery("f", limit=100)]
        assert sorted(kept) == sorted(f"line {i}" for i in range(10) if i != 5)
        assert store.dropped("f") == 1
    finally:
        await store.close()


def test_followers_that_never_read_are_capped(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data").start()
    held: list[socket.socket] = []
    try:
        gw.deploy({"functions": [fn("neighbour")]}, {"neighbour": NEIGHBOUR})
        assert gw.client is not None
        host, port = gw.url.removeprefix("http://").rsplit(":", 1)
        request = (f"GET /v1/functions/neighbour/logs?follow=1 HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {gw.token}\r\n\r\n").encode()  # fmt: skip
        for _ in range(64):  # followers that never read a byte
            s = socket.create_connection((host, int(port)))
            s.sendall(request)
            held.append(s)

        def refused() -> bool:
            # Headers only: a follow that is accepted streams until closed.
            with gw.client.stream("GET", "/v1/functions/neighbour/logs", params={"follow": "1"}) as r:  # type: ignore[union-attr]
                return r.status_code == 429

        gw.wait_for(refused, what="the 65th follower to be refused", timeout=20)
        t0 = time.monotonic()
        assert (
            gw.invoke("neighbour").status_code == 200
        )  # the followers are offered its 40 lines, and do not read
        assert time.monotonic() - t0 < 5
        for s in held:
            s.close()
        held.clear()
        gw.wait_for(lambda: not refused(), what="following to be possible again", timeout=20)
    finally:
        for s in held:
            s.close()
        gw.stop()
