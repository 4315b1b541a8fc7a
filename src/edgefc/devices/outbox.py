"""The device layer's messages into the router: reports, events and status changes, held while a deployment is
applied and routed in order once its routes are in place.

Link IoT Edge drivers register and report while their module is imported, i.e. while the deployment that starts
them is being applied (at a deploy, and when the gateway starts from its data dir); the router then still has the
previous routes (or none). Held here, those messages reach the new routes: a device's first report is not lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.devices")

# (topic, body, source id) → into the router as a QoS 0 message with source type "device".
Publish = Callable[[str, bytes, str], Awaitable[Any]]

# A hold that no release ends (an apply that died half-way) ends by itself after this long, and keeps at most
# this many messages meanwhile (the oldest go first, counted in the log): memory stays bounded whatever happens.
HOLD_LIMIT_S = 300.0
HOLD_LIMIT_MESSAGES = 10_000


def encode(value: Any) -> bytes:
    """A message body as the device layer writes them: compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class Outbox:
    """Sends device messages through ``publish``; between :meth:`hold` and :meth:`release` it keeps them."""

    def __init__(self, publish: Publish, tasks: TaskGroup) -> None:
        self._publish = publish
        self._tasks = tasks
        self._held: list[tuple[str, bytes, str]] | None = None
        self._dropped = 0
        self._timer: asyncio.Task[None] | None = None

    def hold(self) -> None:
        """Keep what is sent from now on until :meth:`release` (a deployment is being applied)."""
        if self._held is None:
            self._held = []
            self._timer = self.spawn(self._release_later(self._held))

    async def _release_later(self, held: list[tuple[str, bytes, str]]) -> None:
        await asyncio.sleep(HOLD_LIMIT_S)
        if self._held is held:
            log.warning("device messages were held for %g s without the deployment finishing: routing them", HOLD_LIMIT_S)
            await self.release()

    async def send(self, source: str, topic: str, payload: Any) -> None:
        """Route one message now, or keep it while holding. Raises what the router raises (not while holding)."""
        if self._held is not None:
            if len(self._held) >= HOLD_LIMIT_MESSAGES:
                self._held.pop(0)
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("%d held device message(s) dropped: over %d while a deployment is applied",
                                self._dropped, HOLD_LIMIT_MESSAGES)  # fmt: skip
            self._held.append((topic, encode(payload), source))
            return
        await self._publish(topic, encode(payload), source)

    async def release(self) -> None:
        """Route the held messages in order (and those held meanwhile), then stop holding. Never raises."""
        held = self._held
        if held is None:
            return
        while held:
            topic, body, source = held.pop(0)
            try:
                await self._publish(topic, body, source)
            except Exception:  # noqa: BLE001 — one refused message must not hold back the others
                log.exception("could not route the held message on %s from device %s", topic, source)
        if self._held is held:
            self._held = None
            self._dropped = 0
            if self._timer is not None and self._timer is not asyncio.current_task():
                self._timer.cancel()
            self._timer = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` (a send or a release asked for from synchronous code) in the gateway's task group."""
        return self._tasks.spawn(coro, "devices-outbox")

    def close(self) -> None:
        """Stop the hold's time limit (the other tasks end with the task group)."""
        if self._timer is not None:
            self._timer.cancel()
