"""Deployments: apply (multipart or a zip of the manifest's folder), inspect, roll back."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from edgefc.api.body import read_body
from edgefc.api.routing import Router
from edgefc.api.state import gateway_of
from edgefc.errors import BadRequest, PayloadTooLarge, ValidationError
from edgefc.gateway.deploy import Limits, split_folder_zip

router = Router(tags=["deployment"])

DEPLOY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["manifest"],
                    "properties": {"manifest": {"type": "string"}},
                    "additionalProperties": {"type": "string", "format": "binary"},
                }
            },
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises PayloadTooLarge past ``limit`` body bytes (a chunked body has no Content-Length)."""
    size = 0

    async def capped() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the cap of {limit} bytes")
        return message

    return capped


async def _multipart(request: Request, max_body: int) -> tuple[str, dict[str, bytes]]:
    request = Request(request.scope, _capped(request.receive, max_body))
    try:
        form = await request.form(max_files=1000, max_fields=1000, max_part_size=max_body)
    except PayloadTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 — any parse failure of the multipart body is the client's
        raise BadRequest(f"cannot parse the multipart body: {exc}") from exc
    manifest_text: str | None = None
    uploads: dict[str, bytes] = {}
    try:
        for key, value in form.multi_items():
            data = await value.read() if isinstance(value, UploadFile) else value.encode("utf-8")
            if key == "manifest":
                manifest_text = data.decode("utf-8", errors="replace")
            elif key in uploads:
                raise ValidationError([f"upload: two bundle parts are named {key!r}"])
            else:
                uploads[key] = data
    finally:
        await form.close()
    if manifest_text is None:
        raise ValidationError(["upload: the multipart body has no part named 'manifest'"])
    return manifest_text, uploads


@router.put("/v1/deployment", openapi_extra=DEPLOY_BODY, status_code=200)
async def put_deployment(request: Request) -> dict[str, Any]:
    """Apply a deployment: everything is validated first; on any problem nothing changes."""
    gateway = gateway_of(request)
    limits = gateway.config.limits
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        manifest_text, uploads = await _multipart(request, limits.max_body_bytes)
    elif ctype in ("application/zip", "application/x-zip-compressed"):
        data = await read_body(request, limits.max_body_bytes)
        manifest_text, uploads = await asyncio.to_thread(
            split_folder_zip, data, Limits(limits.max_bundle_bytes, limits.max_bundle_files)
        )
    else:
        raise BadRequest(f"Content-Type must be multipart/form-data or application/zip, got {ctype or 'none'!r}")
    result = await gateway.deployments.deploy(manifest_text, uploads)
    return {"status": "applied", **result}


@router.get("/v1/deployment")
async def get_deployment(request: Request) -> dict[str, Any]:
    """The applied deployment: version, manifest, apply status, previous version."""
    return await gateway_of(request).deployments.info()


@router.post("/v1/deployment/rollback")
async def rollback(request: Request) -> dict[str, Any]:
    """Apply the previous deployment again."""
    result = await gateway_of(request).deployments.rollback()
    return {"status": "applied", **result}
