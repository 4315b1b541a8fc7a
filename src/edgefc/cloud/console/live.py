"""Live parts of pages over server-sent events: re-rendered fragments on each change, and followed log rows.

A fragment stream subscribes to the instance's ``events:<id>`` topic before it renders (so no change falls
between a render and the wait), sends the fragment when its HTML changed, and a comment now and then so
proxies keep the connection. Starlette ends the generator when the browser goes away; every stream also ends
when the replica stops (``notifier.close()`` wakes it), so an open console tab never holds up a shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse

from edgefc.cloud.console.render import SECURITY_HEADERS
from edgefc.cloud.notify import Notifier

HEARTBEAT_S = 15.0
# Reports carry figures that change on every report; without a wake-up a page still refreshes this often.
REFRESH_S = 5.0


def event(name: str, data: str, *, event_id: str | None = None) -> bytes:
    """One server-sent event; every line of ``data`` gets its own ``data:`` field.

    A bare CR ends a line in the event-stream format too, so it is turned into LF first: a log line holding one
    cannot start a field of its own.
    """
    data = data.replace("\r\n", "\n").replace("\r", "\n")
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    """A ``text/event-stream`` response with the console's headers (and no buffering by proxies)."""
    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def fragments(request: Request, notifier: Notifier, instance_id: str,
              render: Callable[[], Awaitable[str]]) -> StreamingResponse:
    """Send ``render()`` as an ``html`` event now and after every change of the instance."""

    async def body() -> AsyncIterator[bytes]:
        last = None
        quiet = 0.0
        with notifier.subscribe(f"events:{instance_id}") as waiter:
            while not notifier.closed:
                html = await render()
                if html != last:
                    last = html
                    quiet = 0.0
                    yield event("html", html)
                woken = await waiter.wait(REFRESH_S)
                if not woken:
                    quiet += REFRESH_S
                    if quiet >= HEARTBEAT_S:
                        quiet = 0.0
                        yield b": keep-alive\n\n"

    return stream(body())
