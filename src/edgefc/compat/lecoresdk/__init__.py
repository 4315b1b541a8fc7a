"""``lecoresdk`` (Link IoT Edge function SDK for Python) on edgefc's ``fc.things``, ``fc.publish``, ``fc.invoke``.

Application code written for Link IoT Edge runs unmodified::

    import lecoresdk

    iot_data = lecoresdk.IoTData()

    def handler(event, context):
        iot_data.setThingProperties({"productKey": "pk", "deviceName": "lamp", "payload": {"LightSwitch": 1}})
        iot_data.publish({"topic": "/alerts/lamp", "payload": "switched on"})
        answer = lecoresdk.Client().invoke_function(
            {"functionId": "logger", "invocationType": "RequestResponse", "payload": "hello"})
        return answer["payload"]

Thing operations return the driver's answer dict and raise ``edgefc.sdk.things.ThingError`` (``code``,
``message``; a driver's refusal keeps its code) on failure. ``invoke_function`` never raises for a failed
function: it returns ``{"statusCode", "functionError", "payload"}`` as Link IoT Edge does.
"""

from __future__ import annotations

import json
from typing import Any

import edgefc.sdk as _fc
from edgefc.devices import codes as _codes
from edgefc.sdk import things as _things
from edgefc.sdk.things import ThingError

__all__ = ["Client", "IoTData", "ThingError"]


def _need(params: Any, *keys: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ThingError(f"params must be a dict, got {type(params).__name__}", _codes.INVALID_PARAM)
    missing = [k for k in keys if params.get(k) in (None, "")]
    if missing:
        raise ThingError(f"params is missing {', '.join(missing)}", _codes.INVALID_PARAM)
    return params


class IoTData:
    """Messages and devices: ``publish``, ``getThingProperties``, ``setThingProperties``, ``callThingService``,
    ``getThingsWithTags``; each takes one params dict as Link IoT Edge's does."""

    def publish(self, params: dict[str, Any]) -> None:
        """``{"topic", "payload"[, "qos"]}`` into the gateway's router (source ``function:<this function>``)."""
        p = _need(params, "topic")
        _fc.publish(p["topic"], p.get("payload", ""), int(p.get("qos", 0)))

    def getThingProperties(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        """``{"productKey", "deviceName", "payload": [names]}`` → the driver's ``{name: value}``."""
        p = _need(params, "productKey", "deviceName")
        keys = p.get("payload") or []
        if isinstance(keys, str):
            keys = [keys]
        return _things.get_properties(p["productKey"], p["deviceName"], list(keys), timeout=p.get("timeout"))

    def setThingProperties(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        """``{"productKey", "deviceName", "payload": {name: value}}`` → the driver's answer dict."""
        p = _need(params, "productKey", "deviceName", "payload")
        return _things.set_properties(p["productKey"], p["deviceName"], dict(p["payload"]), timeout=p.get("timeout"))

    def callThingService(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        """``{"productKey", "deviceName", "service", "payload": {args}}`` → the driver's answer dict."""
        p = _need(params, "productKey", "deviceName", "service")
        return _things.call_service(p["productKey"], p["deviceName"], p["service"], dict(p.get("payload") or {}),
                                    timeout=p.get("timeout"))  # fmt: skip

    def getThingsWithTags(self, params: dict[str, Any]) -> list[dict[str, str]]:  # noqa: N802
        """``{"payload": [{"key", "value"}, ...]}`` → ``[{"productKey", "deviceName"}]`` of devices with all those tags."""
        p = _need(params, "payload")
        tags = p["payload"]
        if isinstance(tags, dict):
            tags = [tags]
        wanted = {str(t["key"]): str(t["value"]) for t in tags}
        return [{"productKey": d["product_key"], "deviceName": d["device_name"]} for d in _things.find(wanted)]


_STATUS = {"NotFound": 404, "Busy": 429, "Unavailable": 503, "ValidationError": 400, "BadRequest": 400}
_FUNCTION_FAILURES = ("Handled", "Unhandled", "Timeout", "OutOfMemory")


def _function_name(function_id: str) -> str:
    """The function a Link IoT Edge function id names: its last path segment (``service/function`` or an ARN)."""
    return function_id.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


class Client:
    """``Client().invoke_function(params)``: invoke another function of this gateway."""

    def invoke_function(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{"functionId", "invocationType": "RequestResponse" | "Event", "payload"[, "invokerContext"]}``.

        Returns ``{"statusCode", "functionError", "payload"}``: 200 with the result bytes (or, when the function
        failed, ``functionError`` = Handled | Unhandled | Timeout | OutOfMemory and a JSON ``errorMessage``
        payload); 202 for an Event; 404/429/503/400 with ``functionError`` naming why it could not run.
        """
        p = _need(params, "functionId")
        kind = p.get("invocationType", "RequestResponse")
        sync = kind in ("RequestResponse", "sync", 0, "0")
        try:
            result = _fc.invoke(_function_name(str(p["functionId"])), p.get("payload", b""), "sync" if sync else "async")
        except _fc.FunctionError as exc:
            status = 200 if exc.type in _FUNCTION_FAILURES else _STATUS.get(exc.type, 500)
            body = {"errorMessage": exc.message, "errorType": exc.type, "stackTrace": exc.stack}
            return {"statusCode": status, "functionError": exc.type, "payload": json.dumps(body).encode()}
        if not sync:
            return {"statusCode": 202, "functionError": None, "payload": b""}
        return {"statusCode": 200, "functionError": None, "payload": result}
