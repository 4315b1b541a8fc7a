"""The observe API on a small app holding the real store, stats, metrics and perf (until the gateway e2e tests)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgefc.observe.logs import LogEntry

from .harness import State, line, make_app


@pytest.fixture
async def client(state: State) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_query_parameters(state: State, client: httpx.AsyncClient) -> None:
    now = time.time()
    state.logs.append(line("old", t=now - 7200))
    state.logs.append(line("boom\nTraceback ...", level="error", request_id="r1", t=now - 60))
    state.logs.append(line("fine", request_id="r1", t=now - 30))
    r = await client.get("/v1/functions/alarm/logs")
    assert r.status_code == 200
    assert [e["message"] for e in r.json()["entries"]] == ["fine", "boom\nTraceback ...", "old"]
    r = await client.get("/v1/functions/alarm/logs", params={"since": "1h", "order": "asc"})
    assert [e["message"] for e in r.json()["entries"]] == ["boom\nTraceback ...", "fine"]
    r = await client.get("/v1/functions/alarm/logs", params={"level": "error"})
    (only,) = r.json()["entries"]
    assert only["request_id"] == "r1" and only["level"] == "error"
    r = await client.get("/v1/functions/alarm/logs", params={"request_id": "r1", "q": "fin", "limit": "5"})
    assert [e["message"] for e in r.json()["entries"]] == ["fine"]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    r = await client.get("/v1/functions/alarm/logs", params={"until": until})
    assert [e["message"] for e in r.json()["entries"]] == ["old"]
    r = await client.get("/v1/functions/_gateway/logs")
    assert r.status_code == 200 and r.json() == {"entries": []}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"since": "yesterday"}, "since"), ({"until": "10 minutes"}, "until"), ({"level": "loud"}, "level"),
     ({"limit": "1000000"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
     ({"order": "up"}, "order"), ({"follow": "maybe"}, "follow"), ({"follow": "1", "until": "1h"}, "until")],
)  # fmt: skip
async def test_bad_parameters_are_400_naming_them(
    client: httpx.AsyncClient, params: dict[str, str], parameter: str
) -> None:
    r = await client.get("/v1/functions/alarm/logs", params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "BadRequest" and error["message"].startswith(f"{parameter}: ")


async def test_unknown_function_is_404_unless_it_left_lines(state: State, client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/functions/nobody/logs")
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
    state.logs.append(LogEntry(time.time(), "removed", "", "", "info", "stdout", "still here"))
    r = await client.get("/v1/functions/removed/logs")
    assert r.status_code == 200 and r.json()["entries"][0]["message"] == "still here"


async def test_stats_and_metrics(state: State, client: httpx.AsyncClient) -> None:
    state.perf.record("alarm", "success", 0.010)
    state.perf.record("quiet", "success", 0.002)
    state.metrics.invocation("alarm", "invoke", "success", 0.010)
    r = await client.get("/v1/stats")
    body = r.json()
    assert set(body) == {"host", "functions", "history", "mqtt", "cloud"} and body["cloud"] is None  # no cloud agent
    alarm = body["functions"]["alarm"]
    assert alarm["memory_bytes"] == 40_000_000 and alarm["memory_limit_bytes"] == 128 * 1024 * 1024
    assert alarm["duration_ms"]["p50"] == pytest.approx(10, rel=0.03) and alarm["invocations_per_s"] > 0
    assert body["functions"]["quiet"]["memory_bytes"] == 0  # no instance, but it has served events
    assert len(body["history"]["time"]) == 1 and body["host"]["memory_total_bytes"] > 0
    assert (await client.get("/v1/stats", params={"history": "0"})).json()["history"]["time"] == []
    r = await client.get("/v1/stats", params={"history": "forever"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("history: ")

    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    (sample,) = [s for s in families["edgefc_invocations"].samples if s.name.endswith("_total")]
    assert sample.value == 1 and sample.labels == {
        "function": "alarm",
        "trigger": "invoke",
        "outcome": "success",
    }


# -- follow over a real server: ASGITransport buffers whole responses, SSE needs a socket ------------------


async def events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for text in lines:
        if text.startswith("data: "):
            yield json.loads(text[6:])


async def test_follow_streams_backlog_then_new_lines_and_cleans_up(state: State, server_url: str) -> None:
    for i in range(5):
        state.logs.append(line(f"before {i}"))
    params = {"follow": "1", "limit": "2", "level": "info"}
    async with httpx.AsyncClient(base_url=server_url) as c:
        async with c.stream("GET", "/v1/functions/alarm/logs", params=params, timeout=10) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            stream = events(r.aiter_lines())
            assert [(await anext(stream))["message"] for _ in range(2)] == ["before 3", "before 4"]
            assert state.logs.subscriber_count("alarm") == 1
            state.logs.append(line("debug noise", level="debug"))
            state.logs.append(line("multi\nline", request_id="r7"))
            got = await asyncio.wait_for(anext(stream), 5)
            assert got["message"] == "multi\nline" and got["request_id"] == "r7"
    # The client went away: the server notices and drops the subscription.
    deadline = time.monotonic() + 5
    while state.logs.subscriber_count() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert state.logs.subscriber_count() == 0
