"""The invoke route as a plain ASGI handler in front of FastAPI: the hot path skips routing and dependency solving.

It serves exactly ``POST /v1/functions/{name}/invoke`` with the same behaviour, statuses and error shapes as
:mod:`edgefc.api.functions` (which stays the documented route in ``/openapi.json``); everything else goes on to FastAPI.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefc.errors import BadRequest, EdgefcError, FunctionError, PayloadTooLarge

log = logging.getLogger("edgefc.api")

PREFIX = "/v1/functions/"
SUFFIX = "/invoke"
OCTET = [(b"content-type", b"application/octet-stream")]


class InvokeFastPath:
    """ASGI middleware that answers invoke requests itself."""

    def __init__(self, app: ASGIApp, *, gateway: Any) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(PREFIX) or not path.endswith(SUFFIX):
            await self.app(scope, receive, send)
            return
        name = path[len(PREFIX) : -len(SUFFIX)]
        if not name or "/" in name:
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self._invoke(name, scope, receive)
        except EdgefcError as exc:
            status, body = exc.http_status, json.dumps({"error": exc.to_dict()}).encode()
            headers = [(b"content-type", b"application/json")]
            if isinstance(exc, FunctionError):
                headers.append((b"x-edgefc-error-type", exc.type.encode()))
        except Exception as exc:  # noqa: BLE001 — the same 500 shape FastAPI's handler gives, never a bare crash
            log.exception("unexpected error serving an invoke of %s", name)
            status, body = 500, json.dumps({"error": {"type": "InternalError", "message": str(exc)}}).encode()
            headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _invoke(self, name: str, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        kind = "sync"
        for key, value in scope["headers"]:
            if key == b"x-edgefc-invocation-type":
                kind = value.decode("latin-1").lower()
        if kind not in ("sync", "async"):
            raise BadRequest(f"X-Edgefc-Invocation-Type must be sync or async, got {kind!r}")
        gateway = self.gateway
        gateway.manager(name)  # 404 before reading a body for nothing
        payload = await _read(receive, gateway.config.limits.max_body_bytes)
        if kind == "async":
            inv_id = await gateway.invoke_async(name, payload)
            return 202, [(b"content-type", b"application/json")], json.dumps({"invocation_id": inv_id}).encode()
        result = await gateway.invoke(name, payload)
        return 200, list(OCTET), result


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the cap of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
