"""What gateways call (CONTRACT §7), each with its own instance token: long poll, artifacts, reports, answers."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from edgefc.cloud.app import json_body, require_gateway, service_of
from edgefc.cloud.gateways import MAX_STATUS_BYTES, POLL_WAIT_S
from edgefc.errors import BadRequest, NotFound

router = APIRouter(prefix="/v1/agent", tags=["agent"])
_SHA = re.compile(r"[0-9a-f]{64}")


@router.get("/desired")
async def desired(request: Request, after: int = 0, wait: float = POLL_WAIT_S,
                  instance_id: str = Depends(require_gateway)) -> dict[str, Any]:  # fmt: skip
    """Long poll: the deployment newer than ``after`` and open live requests, held up to ``wait`` seconds."""
    return await service_of(request).gateways.desired(instance_id, after, wait)


@router.get("/artifacts/{sha}", response_model=None)
async def artifact(sha: str, request: Request, instance_id: str = Depends(require_gateway)) -> Response:
    """A code artifact by sha256 (the gateway checks the hash itself)."""
    if not _SHA.fullmatch(sha):
        raise NotFound(f"no artifact with sha256 {sha!r}")
    return Response(await service_of(request).catalog.artifact(sha), media_type="application/zip")


@router.post("/report")
async def report(request: Request, instance_id: str = Depends(require_gateway)) -> dict[str, Any]:
    """A stage of a deployment ``{"deployment", "stage", "message", "traceback"}`` and/or ``{"status": …}``."""
    body = await json_body(request, MAX_STATUS_BYTES)
    service = service_of(request)
    out: dict[str, Any] = {}
    if "stage" in body:
        number = body.get("deployment")
        if not isinstance(number, int) or isinstance(number, bool):
            raise BadRequest("deployment: the number of the deployment the stage belongs to")
        tb = body.get("traceback")
        out["deployment"] = await service.deployments.report(
            instance_id, number, str(body["stage"]), str(body.get("message") or ""),
            "".join(tb) if isinstance(tb, list) else (str(tb) if tb else None),
        )
    if isinstance(body.get("status"), dict):
        out["status"] = await service.gateways.report_status(instance_id, {**body["status"], "time": body.get("time")})
    return out


@router.post("/answers/{request_id}", status_code=204)
async def answer(request_id: str, request: Request, instance_id: str = Depends(require_gateway)) -> Response:
    """The gateway's answer to a live request ``{"status", "body"}``."""
    await service_of(request).gateways.answer(instance_id, request_id, await json_body(request, MAX_STATUS_BYTES))
    return Response(status_code=204)
