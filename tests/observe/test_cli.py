"""``edgefc logs`` and ``edgefc top`` against a served app holding the real store and stats."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner, Result

from edgefc.cli.logs import logs
from edgefc.cli.top import human_bytes, top

from .harness import State, line


def runner(url: str) -> CliRunner:
    return CliRunner(env={"EDGEFC_GATEWAY": url, "EDGEFC_TOKEN": "t", "NO_COLOR": "1", "COLUMNS": "200"})


async def run(url: str, command: object, args: list[str]) -> Result:
    # The CLI is a blocking client: run it in a thread while the served app runs on this loop.
    return await asyncio.to_thread(runner(url).invoke, command, args, catch_exceptions=False)  # type: ignore[arg-type]


async def test_logs_human_and_json(state: State, server_url: str) -> None:
    now = time.time()
    state.logs.append(line("starting", t=now - 30))
    trace = 'Traceback (most recent call last):\n  File "index.py", line 2\nValueError: bad'
    state.logs.append(line(trace, level="error", request_id="req-1", t=now - 20))
    state.logs.append(line("after", request_id="req-2", t=now - 10))

    result = await run(server_url, logs, ["alarm", "--since", "10m"])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert "starting" in out[0] and "INFO" in out[0]  # oldest first, like tail
    assert "ERROR" in out[1] and "[req-1]" in out[1] and out[1].endswith("Traceback (most recent call last):")
    assert out[2] == '      File "index.py", line 2' and out[3] == "    ValueError: bad"  # indented under it
    assert "after" in out[4]

    result = await run(server_url, logs, ["alarm", "--level", "error", "--json"])
    (entry,) = [json.loads(x) for x in result.output.splitlines()]
    assert entry["message"] == trace and entry["request_id"] == "req-1"

    result = await run(server_url, logs, ["alarm", "--request-id", "req-2", "--json"])
    assert [json.loads(x)["message"] for x in result.output.splitlines()] == ["after"]
    result = await run(server_url, logs, ["alarm", "--grep", "START", "--json"])
    assert [json.loads(x)["message"] for x in result.output.splitlines()] == ["starting"]
    result = await run(server_url, logs, ["alarm", "--asc", "--limit", "1", "--json"])
    assert [json.loads(x)["message"] for x in result.output.splitlines()] == ["starting"]


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [(["alarm", "--since", "yesterday"], 2, "since"), (["alarm", "--level", "loud"], 2, "level"),
     (["nobody"], 2, "NotFound")],
)  # fmt: skip
async def test_logs_bad_input_exit_codes(server_url: str, args: list[str], code: int, text: str) -> None:
    result = await asyncio.to_thread(runner(server_url).invoke, logs, args)
    assert result.exit_code == code and text in result.output


async def test_logs_unreachable_gateway() -> None:
    result = await asyncio.to_thread(runner("http://127.0.0.1:9").invoke, logs, ["alarm"])
    assert result.exit_code == 3 and "unreachable" in result.output


async def test_logs_follow_prints_new_lines_until_the_gateway_stops(state: State, server_url: str) -> None:
    state.logs.append(line("backlog"))
    follower = asyncio.create_task(run(server_url, logs, ["alarm", "-f", "--json"]))
    deadline = time.monotonic() + 10
    while state.logs.subscriber_count("alarm") == 0:
        assert time.monotonic() < deadline and not follower.done()
        await asyncio.sleep(0.02)
    state.logs.append(line("live one"))
    state.logs.append(line("live two\nwith more"))
    await state.logs.close()  # a stopping gateway ends every follow stream
    result = await asyncio.wait_for(follower, 10)
    assert result.exit_code == 0
    assert [json.loads(x)["message"] for x in result.output.splitlines()] == [
        "backlog",
        "live one",
        "live two\nwith more",
    ]


async def test_top_once(state: State, server_url: str) -> None:
    state.status = [
        {
            "name": "alarm",
            "mode": "on_demand",
            "state": "running",
            "instances": [{"id": "alarm-1"}],
            "restarts": 2,
        },
        {"name": "quiet", "mode": "continuous", "state": "backoff", "instances": [], "restarts": 0},
    ]
    state.perf.record("alarm", "success", 0.012)
    result = await run(server_url, top, ["--once"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "gateway" in out and "load" in out and "disk free" in out
    alarm_row = next(x for x in out.splitlines() if x.startswith("alarm"))
    assert "running" in alarm_row and "38.1M / 128.0M" in alarm_row
    assert 11.5 <= float(alarm_row.split()[-2]) <= 12.5 and alarm_row.split()[-1] == "2"  # p99, restarts
    assert "backoff" in next(x for x in out.splitlines() if x.startswith("quiet"))


def test_human_bytes() -> None:
    assert [human_bytes(x) for x in (None, 512, 1536, 128 * 1024 * 1024)] == ["-", "512B", "1.5K", "128.0M"]
