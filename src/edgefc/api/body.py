"""Reading request bodies with a cap that holds even without a Content-Length."""

from __future__ import annotations

from starlette.requests import Request

from edgefc.errors import PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; raises PayloadTooLarge past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the cap of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
