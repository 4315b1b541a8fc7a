"""The async lanes: a cap on accepted invocations (429 past it); Busy only delays an accepted one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgefc.errors import Busy
from edgefc.invoker.asynclane import AsyncLanes


def test_admit_refuses_past_the_cap_and_release_gives_room() -> None:
    lanes = AsyncLanes(lambda *a: asyncio.sleep(0, b""), max_pending=2)
    lanes.admit("f")
    lanes.admit("f")
    with pytest.raises(Busy, match="2 async invocations already wait"):
        lanes.admit("f")
    lanes.admit("f", force=True)  # accepted before a restart: never refused
    assert lanes.pending("f") == 3
    lanes.release("f")
    lanes.release("f")
    lanes.admit("g")
    assert (lanes.pending("f"), lanes.pending("g")) == (1, 1)


async def test_busy_only_delays_and_the_payload_is_read_for_each_try() -> None:
    refusals = 3
    reads = 0

    async def invoke(name: str, payload: bytes, trigger: dict[str, Any], rid: str) -> bytes:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise Busy("full")
        return payload

    async def load() -> bytes:
        nonlocal reads
        reads += 1
        return b"event"

    lanes = AsyncLanes(invoke)
    lanes.admit("f")
    assert await asyncio.wait_for(lanes.run("1", "f", load, {"type": "invoke"}), 10) == b"event"
    assert (reads, lanes.pending("f")) == (4, 0)
