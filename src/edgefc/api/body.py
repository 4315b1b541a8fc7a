"""The one body reader of the API: a request body with a cap that holds even without a Content-Length."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive

from edgefc.errors import PayloadTooLarge


async def read_asgi_body(receive: Receive, limit: int) -> bytes:
    """The body of an ASGI request; raises PayloadTooLarge past ``limit`` bytes (before keeping more)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the cap of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The body of a Starlette request; raises PayloadTooLarge past ``limit`` bytes."""
    return await read_asgi_body(request.receive, limit)
