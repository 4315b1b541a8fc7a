"""A process owning the router is SIGKILLed with QoS 1 messages in flight; a new one delivers them all."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from edgefc.router.message import Message
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import Route, RouteTable
from tests.router.helpers import wait_for

CHILD = Path(__file__).with_name("crash_child.py")


async def test_sigkill_with_messages_in_flight_loses_nothing(tmp_path: Path) -> None:
    queue_path, delivered_path = tmp_path / "queue.db", tmp_path / "delivered.log"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(queue_path),
        str(delivered_path),
        "2000",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    accepted: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while len(accepted) < 300:
                line = await child.stdout.readline()
                assert line, "the child died before accepting 300 messages"
                accepted.append(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    before = set(delivered_path.read_bytes().split()) if delivered_path.exists() else set()
    assert set(accepted) - before, "the kill came too late to leave anything in flight"

    after: list[bytes] = []

    async def deliver(name: str, message: Message) -> None:
        after.append(message.payload)

    queue = DurableQueue(queue_path, max_bytes=10_000_000, max_retries=3)
    router = Router(
        RouteTable([Route("r", "api", "#", "function:sink", 1)]), queue=queue, deliver_function=deliver
    )
    await router.start()
    try:
        await wait_for(lambda: set(accepted) <= before | set(after), 20, "every accepted message delivered")
        assert after == sorted(after, key=int), "redelivery after the crash keeps the order"
    finally:
        await router.close()
        queue.close()
