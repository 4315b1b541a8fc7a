"""Async invocations: accepted only while there is room, kept on disk, run as the function's capacity frees.

An event answered 202 is never failed ``Busy`` afterwards: it goes to the function's queue as any event does,
and when that queue is full it waits here (its payload on disk, not in memory) and tries again. What cannot
wait is refused up front with 429.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edgefc.backoff import Backoff
from edgefc.errors import Busy

log = logging.getLogger("edgefc.invoker")

MAX_PENDING = 1000  # accepted and unfinished async invocations per function; the next one is refused with 429

Invoke = Callable[[str, bytes, dict[str, Any], str], Awaitable[bytes]]  # (name, payload, trigger, request id)


class AsyncLanes:
    """Per function: how many async invocations are accepted and unfinished; runs each until it is not Busy."""

    def __init__(self, invoke: Invoke, *, max_pending: int = MAX_PENDING) -> None:
        self._invoke = invoke
        self.max_pending = max_pending
        self._pending: dict[str, int] = {}

    def pending(self, name: str) -> int:
        """Async invocations of ``name`` accepted and not finished."""
        return self._pending.get(name, 0)

    def admit(self, name: str, *, force: bool = False) -> None:
        """Count one more accepted invocation of ``name``. Raises Busy (429) when ``max_pending`` already wait,
        unless ``force`` (one accepted before a restart: it was answered 202 already)."""
        waiting = self._pending.get(name, 0)
        if waiting >= self.max_pending and not force:
            raise Busy(f"function '{name}' is busy: {waiting} async invocations already wait (the cap is "
                       f"{self.max_pending}); try again later")  # fmt: skip
        self._pending[name] = waiting + 1

    def release(self, name: str) -> None:
        """One admitted invocation of ``name`` is done (or was never stored)."""
        left = self._pending.get(name, 1) - 1
        if left > 0:
            self._pending[name] = left
        else:
            self._pending.pop(name, None)

    async def run(self, inv_id: str, name: str, payload: Callable[[], Awaitable[bytes]], trigger: dict[str, Any]) -> bytes:
        """Run one admitted invocation; while the function answers Busy (its queue is full) wait, with the one
        backoff, and try again — reading the payload from disk for each try, so a waiting event costs no RAM.
        Raises what the function raises otherwise (FunctionError, Unavailable, NotFound)."""
        backoff = Backoff(first=0.05, cap=2.0)
        try:
            while True:
                try:
                    return await self._invoke(name, await payload(), trigger, inv_id)
                except Busy:
                    await asyncio.sleep(backoff.next())
        finally:
            self.release(name)
