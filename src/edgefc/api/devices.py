"""Devices over HTTP (CONTRACT §4): the registry, and get/set/service through the owning driver.

Statuses: unknown device 404; the driver's refusal 422 ``{"error": {"type": "DeviceError", "code", "message"}}``;
no driver instance running or device not online 503; no answer in time 504 (``Timeout``); a driver callback
that raised 502 (``Handled``). ``?timeout=S`` bounds the driver's answer (default 5 s).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from edgefc.api.body import read_body
from edgefc.api.routing import Router
from edgefc.api.state import gateway_of
from edgefc.devices.service import DeviceService
from edgefc.errors import BadRequest

router = Router(tags=["devices"])

_JSON_BODY = {
    "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
}


def _service(request: Request) -> DeviceService:
    return gateway_of(request).devices


async def _object(request: Request, *, required: bool) -> dict[str, Any]:
    body = await read_body(request, gateway_of(request).config.limits.max_body_bytes)
    if not body.strip():
        if required:
            raise BadRequest("the body must be a JSON object of properties")
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"timeout must be a number of seconds, got {value!r}") from None


@router.get("/v1/devices")
async def list_devices(request: Request) -> list[dict[str, Any]]:
    """Every device of the applied deployment: driver, online state, tags, last seen, last properties."""
    return _service(request).list_all()


@router.get("/v1/devices/{product_key}/{device_name}")
async def get_device(product_key: str, device_name: str, request: Request) -> dict[str, Any]:
    """One device. Raises NotFound."""
    return _service(request).show(product_key, device_name)


@router.get("/v1/devices/{product_key}/{device_name}/properties")
async def get_properties(product_key: str, device_name: str, request: Request, keys: str = "",
                         timeout: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Current values from the driver (``?keys=a,b``; all the driver offers without)."""
    names = [k.strip() for k in keys.split(",") if k.strip()]
    return await _service(request).get_properties(product_key, device_name, names, _timeout(timeout))


@router.post("/v1/devices/{product_key}/{device_name}/properties", openapi_extra=_JSON_BODY)
async def set_properties(product_key: str, device_name: str, request: Request,
                         timeout: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Set properties (the body) through the driver; 200 with the driver's answer."""
    service = _service(request)
    service.show(product_key, device_name)  # 404 before reading a body for nothing
    properties = await _object(request, required=True)
    return await service.set_properties(product_key, device_name, properties, _timeout(timeout))


@router.post("/v1/devices/{product_key}/{device_name}/services/{name}", openapi_extra=_JSON_BODY)
async def call_service(product_key: str, device_name: str, name: str, request: Request,
                       timeout: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run a service of the device with the body as its arguments; 200 with the driver's answer."""
    service = _service(request)
    service.show(product_key, device_name)
    args = await _object(request, required=False)
    return await service.call_service(product_key, device_name, name, args, _timeout(timeout))
