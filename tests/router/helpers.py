"""Helpers of the router tests: free loopback ports and polling with deadlines."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest


def free_port() -> int:
    """A loopback port that was free a moment ago (mosquitto cannot take an already-bound socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


async def wait_async(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Like ``wait_for`` for an async condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)
