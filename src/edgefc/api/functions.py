"""Function status, invocation (sync and async), invocation lookup and restart."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from edgefc.api.body import read_body
from edgefc.errors import BadRequest

router = APIRouter(tags=["functions"])

INVOKE_BODY = {
    "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    "parameters": [
        {"name": "X-Edgefc-Invocation-Type", "in": "header", "required": False,
         "schema": {"type": "string", "enum": ["sync", "async"]}},
    ],
}  # fmt: skip


@router.get("/v1/functions")
async def list_functions(request: Request) -> list[dict[str, Any]]:
    """Status of every deployed function."""
    return request.app.state.gateway.functions_status()  # type: ignore[no-any-return]


@router.get("/v1/functions/{name}")
async def get_function(name: str, request: Request) -> dict[str, Any]:
    """Status of one function."""
    return request.app.state.gateway.function_status(name)  # type: ignore[no-any-return]


@router.post("/v1/functions/{name}/invoke", openapi_extra=INVOKE_BODY, response_model=None)
async def invoke(name: str, request: Request) -> Response:
    """Invoke a function: the body is the event; sync answers with the result bytes, async with an id (202)."""
    gateway = request.app.state.gateway
    kind = request.headers.get("x-edgefc-invocation-type", "sync").lower()
    if kind not in ("sync", "async"):
        raise BadRequest(f"X-Edgefc-Invocation-Type must be sync or async, got {kind!r}")
    gateway.manager(name)  # 404 before reading a body for nothing
    payload = await read_body(request, gateway.config.limits.max_body_bytes)
    if kind == "async":
        inv_id = await gateway.invoke_async(name, payload)
        return JSONResponse({"invocation_id": inv_id}, status_code=202)
    result = await gateway.invoke(name, payload)
    return Response(result, media_type="application/octet-stream")


@router.get("/v1/invocations/{inv_id}")
async def get_invocation(inv_id: str, request: Request) -> dict[str, Any]:
    """An async invocation's state and, once finished, its result (base64) or error."""
    found = await request.app.state.gateway.get_invocation(inv_id)
    result = found.pop("result")
    found["result_base64"] = base64.b64encode(result).decode() if result is not None else None
    return found  # type: ignore[no-any-return]


@router.post("/v1/functions/{name}/restart")
async def restart(name: str, request: Request) -> dict[str, Any]:
    """Restart a function's instances (and clear a `failed` state)."""
    gateway = request.app.state.gateway
    await gateway.restart_function(name)
    return gateway.function_status(name)  # type: ignore[no-any-return]
