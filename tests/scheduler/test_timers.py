"""Timers: on time, the CONTRACT timer event, and at most one catch-up firing after downtime."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgefc.scheduler.cron import parse_schedule
from edgefc.scheduler.timers import TimerService


async def _until(condition: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s")
        await asyncio.sleep(0.01)


async def test_every_second_fires_on_schedule(tmp_path: Path) -> None:
    fired: list[tuple[str, dict[str, object], datetime]] = []

    async def fire(name: str, event: bytes) -> None:
        fired.append((name, json.loads(event), datetime.now(UTC)))

    timers = TimerService(fire, tmp_path / "timers.json")
    timers.set_timers({"report": (parse_schedule("@every 1s"), {"k": 1})})
    await timers.start()
    try:
        nxt = timers.next_fire("report")
        assert nxt is not None and timedelta(0) < nxt - datetime.now(UTC) <= timedelta(seconds=1)
        await _until(lambda: len(fired) >= 3, 5)
    finally:
        await timers.close()
    names = {name for name, _, _ in fired}
    triggers = [
        datetime.fromisoformat(str(event["triggerTime"]).replace("Z", "+00:00")) for _, event, _ in fired
    ]
    assert (
        names == {"report"} and fired[0][1]["payload"] == {"k": 1} and fired[0][1]["triggerName"] == "report"
    )
    assert [b - a for a, b in zip(triggers, triggers[1:], strict=False)] == [timedelta(seconds=1)] * (
        len(fired) - 1
    )
    assert all(t.microsecond == 0 for t in triggers)  # @every is anchored at whole seconds
    for (_, _, at), trigger in zip(fired, triggers, strict=True):
        assert timedelta(0) <= at - trigger < timedelta(milliseconds=100), "fired late"
    assert timers.lateness()["p99"] < 50
    assert timers.next_fire("nothing") is None


async def test_downtime_gives_one_catch_up_not_a_burst(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "timers.json"
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    state.write_text(json.dumps({"report": an_hour_ago.isoformat()}))  # 3600 missed @every 1s slots
    fired: list[datetime] = []

    async def fire(name: str, event: bytes) -> None:
        fired.append(datetime.now(UTC))

    timers = TimerService(fire, state)
    timers.set_timers({"report": (parse_schedule("@every 1s"), None)})
    caplog.set_level(logging.INFO, logger="edgefc.timers")
    started = datetime.now(UTC)
    await timers.start()
    try:
        await _until(lambda: len(fired) >= 2, 5)  # the catch-up, then the next regular slot
        await asyncio.sleep(0.3)
    finally:
        await timers.close()
    assert fired[0] - started < timedelta(milliseconds=200), "the catch-up fires right away"
    assert len(fired) == 2, "one catch-up, then back on schedule"
    assert any("catch up" in r.getMessage() for r in caplog.records)
    saved = datetime.fromisoformat(json.loads(state.read_text())["report"])
    assert saved > an_hour_ago + timedelta(minutes=59)


async def test_no_catch_up_on_a_first_start_or_removed_timer(tmp_path: Path) -> None:
    fired: list[str] = []

    async def fire(name: str, event: bytes) -> None:
        fired.append(name)

    timers = TimerService(fire, tmp_path / "timers.json")
    timers.set_timers({"a": (parse_schedule("0 0 1 1 *"), None), "b": (parse_schedule("@every 1s"), None)})
    await timers.start()
    try:
        await _until(lambda: "b" in fired, 3)
        timers.set_timers({"a": (parse_schedule("0 0 1 1 *"), None)})
        assert timers.next_fire("b") is None
        count = len(fired)
        await asyncio.sleep(1.2)  # one full period: a removed timer must stay silent
        assert len(fired) == count and "a" not in fired
    finally:
        await timers.close()
