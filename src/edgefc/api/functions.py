"""Function status, async invocation lookup and restart (the invoke route itself is :mod:`edgefc.api.invoke`)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from edgefc.api.routing import Router
from edgefc.api.state import gateway_of

router = Router(tags=["functions"])


@router.get("/v1/functions")
async def list_functions(request: Request) -> list[dict[str, Any]]:
    """Status of every deployed function."""
    return gateway_of(request).status.all()


@router.get("/v1/functions/{name}")
async def get_function(name: str, request: Request) -> dict[str, Any]:
    """Status of one function."""
    return gateway_of(request).status.one(name)


@router.get("/v1/invocations/{inv_id}")
async def get_invocation(inv_id: str, request: Request) -> dict[str, Any]:
    """An async invocation's state and, once finished, its result (base64) or error."""
    found = await gateway_of(request).invoker.get_invocation(inv_id)
    result = found.pop("result")
    found["result_base64"] = base64.b64encode(result).decode() if result is not None else None
    return found  # type: ignore[no-any-return]


@router.post("/v1/functions/{name}/restart")
async def restart(name: str, request: Request) -> dict[str, Any]:
    """Restart a function's instances (and clear a `failed` state)."""
    gateway = gateway_of(request)
    await gateway.invoker.restart(name)
    return gateway.status.one(name)
