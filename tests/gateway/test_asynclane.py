"""The async lanes: a cap on accepted invocations (429 past it), a slot per unit of capacity, Busy only delays."""

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


async def test_busy_only_delays_and_capacity_bounds_concurrency() -> None:
    running = 0
    peak = 0
    refusals = 3

    async def invoke(name: str, payload: bytes, trigger: dict[str, Any], rid: str) -> bytes:
        nonlocal running, peak, refusals
        if refusals:
            refusals -= 1
            raise Busy("full")
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return payload

    lanes = AsyncLanes(invoke)

    async def one(i: int) -> bytes:
        lanes.admit("f")

        async def load() -> bytes:
            return str(i).encode()

        return await lanes.run(str(i), "f", 2, load, {"type": "invoke"})

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(10))), 10)
    assert results == [str(i).encode() for i in range(10)]
    assert peak == 2
    assert lanes.pending("f") == 0
