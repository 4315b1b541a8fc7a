"""Followers of a function's log: a bounded queue per subscriber, fed by the store as lines arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from edgefc.observe.entry import Level, LogFilter, StoredEntry, Stream


class Subscription:
    """An async iterator of new entries of one function; ``close()`` (or leaving ``async with``) unsubscribes.

    A follower slower than the lines arriving loses lines rather than growing memory: it then receives one
    ``gateway`` entry saying how many were skipped.
    """

    def __init__(
        self, function: str, filt: LogFilter, maxsize: int, on_close: Callable[[Subscription], None]
    ) -> None:
        self.function = function
        self.filter = filt
        self.lost = 0
        self._queue: asyncio.Queue[StoredEntry | None] = asyncio.Queue(maxsize)
        self._on_close = on_close
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, entry: StoredEntry) -> None:
        """Queue ``entry`` if it matches; called on the event loop by the store."""
        if self._closed or not self.filter.matches(entry):
            return
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.lost += 1

    def close(self) -> None:
        """Stop following: the iterator ends after what is already queued is not read."""
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        # Wake a reader blocked in get(); drop one queued entry if needed to make room for the marker.
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredEntry:
        if self.lost:
            lost, self.lost = self.lost, 0
            return StoredEntry(
                id=0,
                time=time.time(),
                function=self.function,
                instance="",
                request_id="",
                level=Level.WARNING,
                stream=Stream.GATEWAY.value,
                message=f"{lost} lines skipped: this follower read more slowly than the function logged",
            )
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        entry = await self._queue.get()
        if entry is None:
            raise StopAsyncIteration
        return entry

    async def get(self, timeout: float) -> StoredEntry | None:
        """The next entry, or None when ``timeout`` passes first; raises StopAsyncIteration once closed."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
