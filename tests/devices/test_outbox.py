"""The device outbox: messages sent while a deployment is applied are held, then routed in order."""

from __future__ import annotations

import asyncio
import json

import pytest

from edgefc.devices import outbox as outbox_module
from edgefc.devices.outbox import Outbox
from edgefc.tasks import TaskGroup


async def test_held_messages_are_routed_in_order_once_released_and_later_ones_queue_behind() -> None:
    routed: list[tuple[str, object, str]] = []
    release_started = asyncio.Event()

    async def publish(topic: str, body: bytes, source: str) -> None:
        routed.append((topic, json.loads(body), source))
        release_started.set()
        await asyncio.sleep(0)  # a real router yields: sends made meanwhile must wait their turn
        if topic == "bad":
            raise RuntimeError("refused")

    tasks = TaskGroup("test")
    box = Outbox(publish, tasks)
    await box.send("/pk/d", "t0", {"n": 0})  # not holding: at once
    box.hold()
    for n, topic in enumerate(("t1", "bad", "t2"), start=1):
        await box.send("/pk/d", topic, {"n": n})
    assert [r[0] for r in routed] == ["t0"]
    release = asyncio.create_task(box.release())
    await release_started.wait()
    await box.send("/pk/d", "t3", {"n": 4})  # during the release: still held, behind the others
    await release
    assert [r[0] for r in routed] == ["t0", "t1", "bad", "t2", "t3"]  # the refused one held back nothing
    await box.send("/pk/d", "t4", {})
    assert routed[-1] == ("t4", {}, "/pk/d")
    box.close()
    await tasks.aclose()


async def test_a_hold_is_bounded_in_size_and_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "HOLD_LIMIT_MESSAGES", 3)
    monkeypatch.setattr(outbox_module, "HOLD_LIMIT_S", 0.05)
    routed: list[str] = []
    done = asyncio.Event()

    async def publish(topic: str, body: bytes, source: str) -> None:
        routed.append(topic)
        if len(routed) == 3:
            done.set()

    tasks = TaskGroup("test")
    box = Outbox(publish, tasks)
    box.hold()
    for n in range(5):
        await box.send("/pk/d", f"t{n}", {})
    await asyncio.wait_for(done.wait(), 5)  # nobody released: the time limit did
    assert routed == ["t2", "t3", "t4"]  # the oldest went first
    box.close()
    await tasks.aclose()
