"""``POST /v1/functions/{name}/invoke``: the one invoke route, a plain ASGI handler, and its OpenAPI description.

The hot path of the gateway skips FastAPI's routing and dependency solving; :data:`OPERATION` is merged into
``/openapi.json`` by the app, so what serves is what is documented. Statuses: sync 200 with the result bytes,
async 202 ``{"invocation_id"}``; unknown function 404; full queue 429; body over the cap 413; a function's
failure 502 (504 for ``Timeout``) with ``X-Edgefc-Error-Type``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from edgefc.api.body import read_asgi_body
from edgefc.api.errors import send_error, unexpected
from edgefc.errors import BadRequest, EdgefcError, disk_full, storage_full

if TYPE_CHECKING:
    from edgefc.gateway.core import Gateway

PATH = "/v1/functions/{name}/invoke"
_PREFIX = "/v1/functions/"
_SUFFIX = "/invoke"
_OCTET = (b"content-type", b"application/octet-stream")
_JSON = (b"content-type", b"application/json")

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "type": {"type": "string"}, "message": {"type": "string"}, "details": {}, "stack": {"type": "array", "items": {"type": "string"}},
    }, "required": ["type", "message"]}},
    "required": ["error"],
}  # fmt: skip
OPERATION: dict[str, Any] = {
    "tags": ["functions"],
    "summary": "Invoke",
    "description": "Invoke a function: the body is the event; sync answers with the result bytes, async with an id (202).",
    "operationId": "invoke_v1_functions__name__invoke_post",
    "parameters": [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}},
        {"name": "X-Edgefc-Invocation-Type", "in": "header", "required": False,
         "schema": {"type": "string", "enum": ["sync", "async"]}},
    ],
    "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {
        "200": {"description": "the function's result", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "202": {"description": "accepted (async)", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"invocation_id": {"type": "string"}}, "required": ["invocation_id"]}}}},
        "400": {"description": "bad invocation type", **_ERROR},
        "404": {"description": "no such function", **_ERROR},
        "413": {"description": "body over the cap", **_ERROR},
        "429": {"description": "the function's queue is full", **_ERROR},
        "502": {"description": "the function failed (X-Edgefc-Error-Type)", **_ERROR},
        "503": {"description": "the function cannot take events now", **_ERROR},
        "504": {"description": "the event timed out", **_ERROR},
    },
}  # fmt: skip


class InvokeRoute:
    """ASGI middleware that serves the invoke path itself and hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.max_body = gateway.config.limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(_PREFIX) or not path.endswith(_SUFFIX):
            await self.app(scope, receive, send)
            return
        name = path[len(_PREFIX) : -len(_SUFFIX)]
        if not name or "/" in name:
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self._invoke(name, scope, receive)
        except EdgefcError as exc:
            await send_error(exc, send)
            return
        except Exception as exc:  # noqa: BLE001 — an answer in the error shape, never a dropped connection
            await send_error(unexpected(exc, f"an invoke of {name}"), send)
            return
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
        invoker = self.gateway.invoker
        invoker.manager(name)  # 404 before reading a body for nothing
        payload = await read_asgi_body(receive, self.max_body)
        if kind == "async":
            try:
                inv_id = await invoker.invoke_async(name, payload)
            except Exception as exc:
                if disk_full(exc):
                    raise storage_full(f"the async invocation of {name}") from None
                raise
            return 202, [_JSON], json.dumps({"invocation_id": inv_id}).encode()
        return 200, [_OCTET], await invoker.invoke(name, payload)
