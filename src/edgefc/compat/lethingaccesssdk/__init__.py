"""``lethingaccesssdk`` (Link IoT Edge device access SDK for Python) on edgefc's ``fc.driver``.

Driver code written for Link IoT Edge runs unmodified::

    import lethingaccesssdk

    class Light(lethingaccesssdk.ThingCallback):
        def getProperties(self, keys):
            return 0, {"MeasuredIlluminance": 200}
        def setProperties(self, properties):
            return 100001, {}           # refused: the caller gets code 100001
        def callService(self, name, input_value):
            return 0, {}

    for info in lethingaccesssdk.Config().getThingInfos():
        client = lethingaccesssdk.ThingAccessClient(info)
        client.registerAndonline(Light())
        client.reportProperties({"MeasuredIlluminance": 200})

    def handler(event, context):        # don't remove this function
        return "hello world"

Callbacks return ``(code, dict)``; code 0 is success, anything else a refusal whose code (and the dict's
``"message"``, if any) reaches the caller. Failed calls raise ``edgefc.sdk.things.ThingError`` (``code``,
``message``). Codes are those of ``edgefc.devices.codes`` (docs/devices.md).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import edgefc.sdk as _fc
from edgefc.devices import codes as _codes
from edgefc.sdk import driver as _driver
from edgefc.sdk.things import DeviceError, ThingError

__all__ = ["Config", "ThingAccessClient", "ThingCallback", "ThingError", "getConfig"]

SUCCESS = _codes.SUCCESS


def getConfig() -> str:  # noqa: N802 — Link IoT Edge's name
    """The driver's configuration as JSON text: ``{"config": <driver config>, "deviceList": [thing infos]}``."""
    things = [{"productKey": d.product_key, "deviceName": d.device_name, "custom": d.config}
              for d in _driver.devices()]  # fmt: skip
    return json.dumps({"config": _fc.config(), "deviceList": things})


class Config:
    """The driver's configuration: ``Config()`` reads it from the gateway, ``Config(text_or_dict)`` parses one."""

    def __init__(self, config: str | bytes | dict[str, Any] | None = None) -> None:
        if config is None:
            config = getConfig()
        self.config: dict[str, Any] = json.loads(config) if isinstance(config, str | bytes) else dict(config)

    def getThingInfos(self) -> list[dict[str, Any]]:  # noqa: N802
        """The devices assigned to this driver: ``[{"productKey", "deviceName", "custom": <device config>}]``."""
        return [dict(info) for info in self.config.get("deviceList") or []]

    def getDriverInfo(self) -> Any:  # noqa: N802
        """The driver's own ``config`` from the manifest."""
        return self.config.get("config")


class ThingCallback:
    """Base class of a device's callbacks; override the ones the device supports. Each returns ``(code, dict)``."""

    def getProperties(self, input_value: list[str]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return _codes.PROPERTY_NOT_EXIST, {"message": "getProperties is not implemented"}

    def setProperties(self, input_value: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return _codes.PROPERTY_READ_ONLY, {"message": "setProperties is not implemented"}

    def callService(self, name: str, input_value: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return _codes.SERVICE_NOT_EXIST, {"message": f"service {name!r} is not implemented"}


def _unpack(result: Any, what: str) -> dict[str, Any]:
    """A ``(code, dict)`` answer as the native callback's: the dict, or DeviceError for a non-zero code."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise TypeError(f"{what} must return (code, dict), got {result!r}")
    code, output = result
    output = output if isinstance(output, dict) else {}
    if code != _codes.SUCCESS:
        message = output.get("message") if isinstance(output.get("message"), str) else None
        raise DeviceError(int(code), message or f"{what} returned code {code}")
    return output


def _thing_info(config: Any) -> tuple[str, str]:
    if isinstance(config, str | bytes):
        config = json.loads(config)
    if isinstance(config, Config):
        infos = config.getThingInfos()
        config = infos[0] if len(infos) == 1 else None
    if not isinstance(config, dict) or not config.get("productKey") or not config.get("deviceName"):
        raise ThingError(f"ThingAccessClient needs a thing info with productKey and deviceName, got {config!r}",
                         _codes.INVALID_PARAM)  # fmt: skip
    return str(config["productKey"]), str(config["deviceName"])


class ThingAccessClient:
    """One device: ``ThingAccessClient(thing_info[, callback])``, then ``registerAndOnline(callback)``."""

    def __init__(self, config: Any, callback: ThingCallback | None = None) -> None:
        product_key, device_name = _thing_info(config)
        self._callback = callback
        self._client = _driver.ThingClient(
            product_key, device_name, on_get=self._get, on_set=self._set, on_service=self._service
        )

    def _cb(self) -> Any:
        if self._callback is None:
            raise ThingError("no ThingCallback: pass one to registerAndOnline()", _codes.INVALID_PARAM)
        return self._callback

    def _get(self, keys: list[str]) -> dict[str, Any]:
        return _unpack(self._cb().getProperties(keys), "getProperties")

    def _set(self, properties: dict[str, Any]) -> dict[str, Any]:
        return _unpack(self._cb().setProperties(properties), "setProperties")

    def _service(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return _unpack(self._cb().callService(name, args), "callService")

    def registerAndOnline(self, callback: ThingCallback | None = None) -> None:  # noqa: N802
        """Register the device with the gateway and put it online; its callbacks are served from now on."""
        if callback is not None:
            self._callback = callback
        self._cb()
        self._client.register_and_online()

    registerAndonline = registerAndOnline  # both spellings exist in Link IoT Edge samples

    def online(self) -> None:
        self._client.online()

    def offline(self) -> None:
        self._client.offline()

    def reportProperties(self, properties: dict[str, Any]) -> None:  # noqa: N802
        """Report ``{"name": value}``; routed on ``/sys/{pk}/{dn}/thing/event/property/post``."""
        self._client.report_properties(properties)

    def reportEvent(self, eventName: str, args: dict[str, Any] | None = None) -> None:  # noqa: N802, N803
        """Report an event; routed on ``/sys/{pk}/{dn}/thing/event/{eventName}/post``."""
        self._client.report_event(eventName, args)

    def getTsl(self) -> str:  # noqa: N802
        """The device's thing model (TSL) text: its config's ``tsl``, or an empty model."""
        return self._client.thing_model("tsl")

    def getTslExtInfo(self) -> str:  # noqa: N802
        """The device's TSL extension info text: its config's ``tsl_ext_info``, or ``{}``."""
        return self._client.thing_model("tsl_ext_info")

    getTslConfig = getTslExtInfo  # the older name

    def unregister(self) -> None:
        self._client.unregister()

    def cleanup(self) -> None:
        """Release the device: unregister it, ignoring a gateway that is already gone."""
        with contextlib.suppress(ThingError, RuntimeError, OSError):
            self._client.unregister()
