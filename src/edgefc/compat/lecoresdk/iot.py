"""``lecoresdk.IoTData``: messages and devices, as the SDK (``lecoresdk/iot.py``) answers them.

Each method takes one params dict and returns, never raising for a refusal:

- ``publish({"topic", "payload"[, "qos"]})`` → ``0``, or the status of why the router refused (400 bad topic,
  429 queue full, 503 no routing); bad params → :data:`INVALID_PARAM`. ``payload`` is ``str`` or ``bytes``;
  ``qos`` (0 or 1) is edgefc's addition.
- ``getThingProperties({"productKey", "deviceName", "payload": [names]})`` → the driver's ``{name: value}``.
- ``setThingProperties({"productKey", "deviceName", "payload": {name: value}})`` → ``{}`` on success.
- ``callThingService({"productKey", "deviceName", "service", "payload"})`` → the service's output dict; the
  services ``get`` (payload: a list of names) and ``set`` (payload: a dict) read and write properties.
- A refusal is ``{"errorType": <code>, "errorMessage": <text>}`` with Link IoT Edge's device codes (109000 no
  such device or not registered, 109001 offline, 109002 no such property, 109003 read-only, 109005 no such
  service, 109008 wrong type, 100007 out of range, 100006 timeout, 100000 the driver failed); params of the
  wrong shape return :data:`INVALID_PARAM` (an int), as the SDK does.
- ``getThingsWithTags({"payload": [{tagKey: tagValue}, …]})`` → ``[{"productKey", "deviceName"}]`` of the
  devices carrying every given tag; a gateway refusal raises :class:`RequestException`.
"""

from __future__ import annotations

import logging
from typing import Any

from lecoresdk.fc import FAILED, INVALID_PARAM, SUCCESS, Client

import edgefc.sdk as _fc
from edgefc.sdk import things as _things

_PUBLISH_STATUS = {"ValidationError": 400, "BadRequest": 400, "QueueFull": 429, "Busy": 429, "Unavailable": 503}


class RequestException(Exception):
    """``getThingsWithTags`` could not be answered; ``msg`` says why."""

    def __init__(self, msg: str = "") -> None:
        super().__init__(msg)
        self.msg = msg


def _text(params: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(params.get(k), str) and params[k] != "" for k in keys)


def _refusal(exc: _things.ThingError) -> dict[str, Any]:
    return {"errorType": exc.code, "errorMessage": exc.message}


class IoTData:
    """Publishes messages and operates devices through their drivers."""

    def __init__(self) -> None:
        self.fc = Client()

    def publish(self, params: Any) -> int:
        """Publish into the gateway's router as source ``function:<this function>``; 0 or a status code."""
        if not isinstance(params, dict) or not _text(params, "topic") or "payload" not in params:
            return INVALID_PARAM
        payload, qos = params["payload"], params.get("qos", 0)
        if not isinstance(payload, str | bytes) or qos not in (0, 1):
            return INVALID_PARAM
        try:
            _fc.publish(params["topic"], payload, qos, confirm=True)  # the status needs the router's answer
        except _fc.FunctionError as exc:
            logging.error("publish to %s failed: %s", params["topic"], exc)
            return _PUBLISH_STATUS.get(exc.type, FAILED)
        return SUCCESS

    def getThingProperties(self, params: Any) -> dict[str, Any] | int:  # noqa: N802
        if not isinstance(params, dict) or not isinstance(params.get("payload"), list):
            return INVALID_PARAM
        return self.callThingService({**params, "service": "get"})

    def setThingProperties(self, params: Any) -> dict[str, Any] | int:  # noqa: N802
        if not isinstance(params, dict) or not isinstance(params.get("payload"), dict) or not params["payload"]:
            return INVALID_PARAM
        return self.callThingService({**params, "service": "set"})

    def callThingService(self, params: Any) -> dict[str, Any] | int:  # noqa: N802
        if not isinstance(params, dict) or not _text(params, "productKey", "deviceName", "service"):
            return INVALID_PARAM
        if "payload" not in params:
            return INVALID_PARAM
        pk, dn, service, payload = params["productKey"], params["deviceName"], params["service"], params["payload"]
        if service == "get":
            if not isinstance(payload, list) or not all(isinstance(k, str) for k in payload):
                return INVALID_PARAM
        elif not isinstance(payload, dict):
            return INVALID_PARAM
        try:
            if service == "get":
                return _things.get_properties(pk, dn, payload)
            if service == "set":
                _things.set_properties(pk, dn, payload)
                return {}
            return _things.call_service(pk, dn, service, payload)
        except _things.ThingError as exc:
            return _refusal(exc)

    def getThingsWithTags(self, params: Any) -> list[dict[str, str]] | int:  # noqa: N802
        if not isinstance(params, dict) or not isinstance(params.get("payload"), list):
            return INVALID_PARAM
        wanted: dict[str, str] = {}
        for tag in params["payload"]:
            if not isinstance(tag, dict):
                return INVALID_PARAM
            for key, value in tag.items():
                if wanted.setdefault(str(key), str(value)) != str(value):
                    return []  # one tag key asked with two values: no device has both
        try:
            found = _things.find(wanted)
        except _things.ThingError as exc:
            raise RequestException(msg=exc.message) from None
        return [{"productKey": d["product_key"], "deviceName": d["device_name"]} for d in found]
