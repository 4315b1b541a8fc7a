"""A process that owns a Router and a DurableQueue and is SIGKILLed by test_crash mid-stream.

argv: queue file, delivered log. Publishes QoS 1 messages 0..N-1 and prints "accepted N" once each is
durably accepted; the target function is slow, so many are still queued when the kill comes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import BinaryIO

from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import Route, RouteTable


async def main(queue_path: Path, log: BinaryIO, count: int) -> None:

    async def deliver(name: str, message: Message) -> None:
        await asyncio.sleep(0.002)
        log.write(message.payload + b"\n")
        os.fsync(log.fileno())

    queue = DurableQueue(queue_path, max_bytes=10_000_000, max_retries=3)
    router = Router(
        RouteTable([Route("r", "api", "#", "function:sink", 1)]), queue=queue, deliver_function=deliver
    )
    await router.start()
    for n in range(count):
        await router.publish(Message("t", b"%d" % n, SourceType.API, "api", 1))
        print(f"accepted {n}", flush=True)
    await asyncio.Event().wait()  # deliver until killed


if __name__ == "__main__":
    with open(sys.argv[2], "ab", buffering=0) as delivered:
        asyncio.run(main(Path(sys.argv[1]), delivered, int(sys.argv[3])))
