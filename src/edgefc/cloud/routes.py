"""The admin API under ``/v1`` (CONTRACT §7): each route is one call of the service layer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edgefc.api.body import read_body
from edgefc.cloud.app import json_body, read_json, service_of
from edgefc.cloud.catalog import check_version_number
from edgefc.cloud.validate import MAX_BUNDLE_BYTES
from edgefc.errors import BadRequest, PayloadTooLarge

router = APIRouter(prefix="/v1")

ZIP_BODY = {"requestBody": {"required": True, "content": {"application/zip": {"schema": {"type": "string",
                                                                                         "format": "binary"}}}}}  # fmt: skip


# ---- functions and versions ----------------------------------------------------------------------------------


@router.post("/functions", status_code=201, tags=["functions"])
async def create_function(request: Request) -> dict[str, Any]:
    """Create a function: ``{"name", "handler", "runtime", "initializer"}``."""
    return await service_of(request).catalog.create_function(await json_body(request))


@router.get("/functions", tags=["functions"])
async def list_functions(request: Request) -> list[dict[str, Any]]:
    """Every function with its latest version number."""
    return await service_of(request).catalog.list_functions()


@router.get("/functions/{name}", tags=["functions"])
async def get_function(name: str, request: Request) -> dict[str, Any]:
    """A function with its versions."""
    return await service_of(request).catalog.get_function(name)


@router.delete("/functions/{name}", status_code=204, tags=["functions"])
async def delete_function(name: str, request: Request) -> Response:
    """Delete a function and its versions; refused while an assignment or deployment uses it."""
    await service_of(request).catalog.delete_function(name)
    return Response(status_code=204)


@router.post("/functions/{name}/versions", status_code=201, openapi_extra=ZIP_BODY, tags=["functions"])
async def upload_version(name: str, request: Request) -> dict[str, Any]:
    """Upload a zip of the function's code as its next version (the gateway's bundle checks apply)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BUNDLE_BYTES:
        raise PayloadTooLarge(f"upload of {length} bytes exceeds the cap of {MAX_BUNDLE_BYTES} bytes")
    data = await read_body(request, MAX_BUNDLE_BYTES)
    if not data:
        raise BadRequest("the body must be the zip of the function's code")
    return await service_of(request).catalog.upload_version(name, data)


@router.get("/functions/{name}/versions", tags=["functions"])
async def list_versions(name: str, request: Request) -> list[dict[str, Any]]:
    """The function's versions, oldest first."""
    return await service_of(request).catalog.list_versions(name)


@router.get("/functions/{name}/versions/{number}", tags=["functions"])
async def get_version(name: str, number: str, request: Request) -> dict[str, Any]:
    """One version: number, sha256, size, time."""
    return await service_of(request).catalog.get_version(name, check_version_number(number))


@router.get("/functions/{name}/versions/{number}/zip", tags=["functions"], response_model=None)
async def download_version(name: str, number: str, request: Request) -> Response:
    """Download a version's zip."""
    n = check_version_number(number)
    data = await service_of(request).catalog.version_data(name, n)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{n}.zip"'})  # fmt: skip


@router.delete("/functions/{name}/versions/{number}", status_code=204, tags=["functions"])
async def delete_version(name: str, number: str, request: Request) -> Response:
    """Delete a version; refused while an assignment or a current deployment uses it."""
    await service_of(request).catalog.delete_version(name, check_version_number(number))
    return Response(status_code=204)


# ---- instances -----------------------------------------------------------------------------------------------


@router.post("/instances", status_code=201, tags=["instances"])
async def create_instance(request: Request) -> dict[str, Any]:
    """Create an edge instance ``{"name"}``; the answer holds its ``id`` and ``token`` (shown only now)."""
    return await service_of(request).fleet.create_instance(await json_body(request))


@router.get("/instances", tags=["instances"])
async def list_instances(request: Request) -> list[dict[str, Any]]:
    """Every instance, with whether its gateway is online."""
    return await service_of(request).fleet.list_instances()


@router.get("/instances/{instance_id}", tags=["instances"])
async def get_instance(instance_id: str, request: Request) -> dict[str, Any]:
    """An instance with its assignments, routes and devices."""
    return await service_of(request).fleet.get_instance(instance_id)


@router.delete("/instances/{instance_id}", status_code=204, tags=["instances"])
async def delete_instance(instance_id: str, request: Request) -> Response:
    """Delete an instance; its token stops working."""
    await service_of(request).fleet.delete_instance(instance_id)
    return Response(status_code=204)


@router.post("/instances/{instance_id}/token", tags=["instances"])
async def rotate_token(instance_id: str, request: Request) -> dict[str, Any]:
    """A new token for the instance (shown only now); the old one is refused from now on."""
    return await service_of(request).fleet.rotate_token(instance_id)


@router.put("/instances/{instance_id}/assignments/{function}", tags=["instances"])
async def put_assignment(instance_id: str, function: str, request: Request) -> dict[str, Any]:
    """Assign ``{"version", …every function setting of the manifest}``."""
    return await service_of(request).fleet.put_assignment(instance_id, function, await json_body(request))


@router.delete("/instances/{instance_id}/assignments/{function}", status_code=204, tags=["instances"])
async def delete_assignment(instance_id: str, function: str, request: Request) -> Response:
    """Unassign a function; the next deployment removes it from the gateway."""
    await service_of(request).fleet.delete_assignment(instance_id, function)
    return Response(status_code=204)


async def _list_body(request: Request, key: str) -> Any:
    data = await read_json(request)
    return data.get(key) if isinstance(data, dict) and set(data) == {key} else data


@router.put("/instances/{instance_id}/routes", tags=["instances"])
async def put_routes(instance_id: str, request: Request) -> list[dict[str, Any]]:
    """Replace the instance's routes (a list as in the manifest, or ``{"routes": [...]}``)."""
    return await service_of(request).fleet.set_list(instance_id, "routes", await _list_body(request, "routes"))


@router.put("/instances/{instance_id}/devices", tags=["instances"])
async def put_devices(instance_id: str, request: Request) -> list[dict[str, Any]]:
    """Replace the instance's devices (a list as in the manifest, or ``{"devices": [...]}``)."""
    return await service_of(request).fleet.set_list(instance_id, "devices", await _list_body(request, "devices"))


# ---- deployments and live views ------------------------------------------------------------------------------


@router.post("/instances/{instance_id}/deployments", status_code=201, tags=["deployments"])
async def deploy(instance_id: str, request: Request) -> dict[str, Any]:
    """Deploy the instance's current assignments, routes and devices."""
    return await service_of(request).deployments.deploy(instance_id)


@router.get("/instances/{instance_id}/deployments", tags=["deployments"])
async def list_deployments(instance_id: str, request: Request) -> list[dict[str, Any]]:
    """The instance's deployments, newest first."""
    return await service_of(request).deployments.list(instance_id)


@router.get("/instances/{instance_id}/deployments/{number}", tags=["deployments"])
async def get_deployment(instance_id: str, number: str, request: Request) -> dict[str, Any] | None:
    """One deployment with its stages and manifest."""
    return await service_of(request).deployments.get(instance_id, _number(number))


@router.post("/instances/{instance_id}/deployments/{number}/rollback", status_code=201, tags=["deployments"])
async def rollback(instance_id: str, number: str, request: Request) -> dict[str, Any]:
    """Deploy again what an earlier succeeded deployment held (a new deployment number)."""
    return await service_of(request).deployments.rollback(instance_id, _number(number))


@router.get("/instances/{instance_id}/status", tags=["live"])
async def status(instance_id: str, request: Request) -> dict[str, Any]:
    """The gateway's last reported function status and host figures, with ``reported_at``."""
    return await service_of(request).gateways.status(instance_id)


@router.get("/instances/{instance_id}/logs", tags=["live"], response_model=None)
async def logs(instance_id: str, request: Request) -> Response:
    """The gateway's log query (``function`` and CONTRACT §4's parameters), answered live; 504 when offline."""
    code, body = await service_of(request).gateways.query_logs(instance_id, dict(request.query_params))
    return JSONResponse(body, status_code=code)


@router.get("/instances/{instance_id}/events", tags=["live"], response_model=None)
async def events(instance_id: str, request: Request, deployment: str | None = None) -> StreamingResponse:
    """Server-sent events: the deployment (``deployment=N`` or the latest) and the gateway's status, on change."""
    stream = service_of(request).gateways.events(instance_id, _number(deployment) if deployment else None)
    first = await anext(stream)  # NotFound is an HTTP error, not a broken stream

    async def body() -> Any:
        yield first
        async for event in stream:
            yield event

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


def _number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"deployment number must be a whole number from 1, got {text!r}")
    return int(text)
