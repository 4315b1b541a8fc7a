"""``lethingaccesssdk`` — Link IoT Edge's device-access SDK for Python — on edgefc's ``fc.driver``.

Behaves as the published SDK (aliyun/linkedge-thing-access-sdk-python, ``lethingaccesssdk/thing_access.py`` and
the ``leda_python`` under it) does, name by name:

- At import the driver's configuration is read once: ``Config().getThingInfos()`` lists the devices assigned to
  this driver as ``{"productKey", "deviceName"[, "custom"]}`` (``custom``: the device's config as JSON text),
  ``Config().getDriverInfo()`` the driver's own config, ``getConfig()`` both as JSON text; ``FC_DRIVER_CONFIG``
  holds ``{"deviceList": [...]}``. Outside a driver the lists are empty and an error is logged.
- ``ThingAccessClient(info)`` with a bad ``info`` logs an error; its ``registerAndOnline(callback)`` then logs and
  returns None. Otherwise it registers the device and returns it (a truthy device object); a callback that is
  not a ``ThingCallback`` raises ``LedaCallBackException``, a gateway that refuses ``LedaRPCMethodException``.
- Before registration ``online``, ``reportProperties``, ``reportEvent`` log an error and return; ``offline``,
  ``unregister`` and ``cleanup`` (which is ``offline``) do nothing. Reports of the wrong type, or made while the
  device is offline, raise ``LedaReportPropertyException``/``LedaReportEventException``. ``unregister()`` twice
  raises ``LedaRPCMethodException``; ``online()`` after ``unregister()`` connects the device again.
- Callbacks answer ``(code, dict)``: code 0 passes the dict on (nothing for a set); any other code reaches the
  caller as 100000, an answer that is not ``(int, dict)`` (or a callback raising TypeError, ValueError, KeyError
  or AttributeError) as 100001, a callback the driver did not override (or any other exception) as 100000.
- ``getTsl()``/``getTslConfig()``/``getTslExtInfo()`` return the model's text, or None (logged) without one.

edgefc additions, for what the published SDK leaves undefined: a report the device's thing model refuses is
logged with its code and dropped, as the device bus drops it on Link IoT Edge.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from leda_python import leda
from leda_python import ledaException as exception

from edgefc.sdk import driver as _driver
from edgefc.sdk.things import DeviceError, ThingError

_TSL_KEYS = ("tsl", "tsl_ext_info", "tslExtInfo")


class ThingCallback(leda.BaseDeviceCallback):  # type: ignore[misc, name-defined]
    """Extend it and implement ``getProperties``, ``setProperties`` and ``callService``, each returning
    ``(code, dict)``; an un-overridden one raises, which the caller sees as code 100000."""

    def callService(self, name: str, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002
        raise Exception("callService is empty")

    def getProperties(self, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002
        raise Exception("getProperties is empty")

    def setProperties(self, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002
        raise Exception("setProperties is empty")


def _answer(what: str, device: str, call: Any, *, keep_output: bool = True) -> dict[str, Any]:
    """Run one callback and turn its ``(code, dict)`` into the value, or DeviceError with the SDK's code."""
    try:
        code, output = call()
    except (AttributeError, ValueError, TypeError, KeyError) as err:
        logging.warning("%s(%s): %s", what, device, err)
        raise DeviceError(exception.LEDA_ERROR_INVAILD_PARAM, str(err)) from None
    except Exception as err:  # noqa: BLE001 — the SDK answers "unknown error" and logs the exception
        logging.exception("%s(%s) failed", what, device)
        raise DeviceError(exception.LEDA_ERROR_FAILED, f"{what}({device}): {err}") from None
    if not isinstance(output, dict) or isinstance(code, bool) or not isinstance(code, int):
        logging.warning("%s(%s) return args type is invalid: %s", what, device, type(output))
        raise DeviceError(exception.LEDA_ERROR_INVAILD_PARAM, f"{what}({device}) return args type is invalid")
    if code != exception.LEDA_SUCCESS:
        raise DeviceError(exception.LEDA_ERROR_FAILED, f"{what}({device}) exec failed (code {code})")
    return output if keep_output else {}


class _SubDevice:
    """A registered device (the SDK's ``LedaSubDevice``): online, offline, reportProperties, reportEvent."""

    def __init__(self, product_key: str, device_name: str, callback: Any) -> None:
        self.product_key = product_key
        self.device_name = device_name
        self.cloud_id = f"{product_key}_{device_name}"
        self.callback = callback
        self.connected = False
        self._lock = threading.Lock()
        name = self.cloud_id
        self.client = _driver.ThingClient(
            product_key, device_name,
            on_get=lambda keys: _answer("get", name, lambda: callback.getProperties(keys)),
            on_set=lambda props: _answer("set", name, lambda: callback.setProperties(props), keep_output=False),
            on_service=lambda svc, args: _answer("callService", name, lambda: callback.callService(svc, args)),
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<device {self.cloud_id} {'online' if self.connected else 'offline'}>"

    def get_cloud_id(self) -> str:
        return self.cloud_id

    def online(self) -> None:
        """Connect the device (again); raises LedaRPCMethodException when the gateway refuses."""
        with self._lock:
            if self.connected:
                return
            try:
                self.client.register_and_online()
            except (ThingError, TimeoutError) as exc:
                raise exception.LedaRPCMethodException(f"connect device failed: {exc}", exception.LEDA_ERROR_FAILED) from None
            self.connected = True
            logging.info("Device(%s): is connected", self.cloud_id)

    def offline(self) -> None:
        """Disconnect the device; a failure is logged, never raised."""
        with self._lock:
            if not self.connected:
                return
            self.connected = False
            try:
                self.client.offline()
            except (ThingError, TimeoutError) as exc:
                logging.warning("device(%s) disconnected failed: %s", self.cloud_id, exc)
            logging.info("Device(%s): is disconnected", self.cloud_id)

    def reportProperties(self, propertiesDict: Any) -> None:  # noqa: N802, N803
        if not isinstance(propertiesDict, dict):
            raise exception.LedaReportPropertyException(
                f"device({self.cloud_id}):reportProperties,params type is invalid: {type(propertiesDict)}")
        if not self.connected:
            logging.warning("device(%s) can't report property unless online", self.cloud_id)
            raise exception.LedaReportPropertyException(f"device({self.cloud_id}) can't report property unless online")
        try:
            self.client.report_properties(propertiesDict)
        except (ThingError, TimeoutError) as exc:
            logging.error("device(%s): report refused (%s): %s", self.cloud_id, getattr(exc, "code", "-"), exc)

    def reportEvent(self, eventName: Any, eventDict: Any) -> None:  # noqa: N802, N803
        if not isinstance(eventDict, dict) or not isinstance(eventName, str):
            raise exception.LedaReportEventException(f"device({self.cloud_id}):reportEvent,params type is invalid")
        if not self.connected:
            logging.warning("device(%s) can't report event unless online", self.cloud_id)
            raise exception.LedaReportEventException(f"device({self.cloud_id}) can't report event unless online")
        try:
            self.client.report_event(eventName, eventDict)
        except (ThingError, TimeoutError) as exc:
            logging.error("device(%s): event %s refused (%s): %s", self.cloud_id, eventName, getattr(exc, "code", "-"), exc)


# The devices this driver registered, by product key + device name (the SDK's device_service_dict).
_registered: dict[str, _SubDevice] = {}
_registered_lock = threading.Lock()


def _register(device_name: Any, product_key: Any, callback: Any) -> _SubDevice:
    if not isinstance(callback, leda.BaseDeviceCallback):
        raise exception.LedaCallBackException("bus callback object is invalid")
    if not isinstance(device_name, str) or not isinstance(product_key, str):
        raise exception.LedaParamsException("cmp_bus_register_device: input args type is invalid")
    key = product_key + device_name
    with _registered_lock:
        device = _registered.get(key)
        if device is not None:
            logging.warning("device_name(%s) has already registered", device_name)
        else:
            device = _SubDevice(product_key, device_name, callback)
        device.online()
        _registered[key] = device
    return device


def _unregister(device: _SubDevice) -> None:
    with _registered_lock:
        key = device.product_key + device.device_name
        if _registered.get(key) is not device:
            raise exception.LedaRPCMethodException(f"device({device.device_name}) is not exited")
        del _registered[key]
        device.offline()
        try:
            device.client.unregister()
        except (ThingError, TimeoutError):
            logging.exception("unregister device %s failed", device.cloud_id)


class ThingAccessClient:
    """One device of this driver: ``ThingAccessClient({"productKey", "deviceName"})``."""

    def __init__(self, config: Any = None) -> None:
        self.pk: Any = None
        self.dn: Any = None
        if isinstance(config, dict):
            if "productKey" in config and "deviceName" in config:
                self.pk, self.dn = config["productKey"], config["deviceName"]
            else:
                logging.error("config is error: a thing info needs productKey and deviceName, got %r", config)
        else:
            logging.error("can't init ThingAccessClient, parameter is error: %r", config)
        self.device: _SubDevice | None = None

    def _model(self, kind: str) -> str | None:
        if self.pk is None or self.dn is None:
            logging.error("get TSL failed: no product key or device name")
            return None
        try:
            found = _driver.ThingClient(str(self.pk), str(self.dn)).thing_model(kind)
        except (ThingError, TimeoutError) as exc:
            logging.error("get TSL failed: %s", exc)
            return None
        if found is None:
            logging.error("get TSL failed: device %s/%s has no %s in its config", self.pk, self.dn, kind)
        return found

    def getTsl(self) -> str | None:  # noqa: N802
        """The device's thing model (TSL) as JSON text; None when it has none."""
        return self._model("tsl")

    def getTslConfig(self) -> str | None:  # noqa: N802
        """The device's TSL extension info (``tsl_ext_info``) as JSON text; None when it has none."""
        return self._model("tsl_ext_info")

    getTslExtInfo = getTslConfig

    def registerAndOnline(self, callback: Any) -> _SubDevice | None:  # noqa: N802
        """Register the device and put it online; returns the device, or None (logged) without a thing info."""
        return self.registerAndonline(callback)

    def registerAndonline(self, callback: Any) -> _SubDevice | None:  # noqa: N802
        if self.dn is None or self.pk is None:
            logging.error("product key or device name is None")
            return None
        self.device = _register(self.dn, self.pk, callback)
        return self.device

    def unregister(self) -> None:
        if self.device is not None:
            _unregister(self.device)

    def online(self) -> None:
        if self.device is not None:
            self.device.online()
        else:
            logging.error("please register and online firstly")

    def offline(self) -> None:
        if self.device is not None:
            self.device.offline()

    def reportProperties(self, propertiesDict: Any) -> None:  # noqa: N802, N803
        if self.device is not None:
            self.device.reportProperties(propertiesDict)
        else:
            logging.error("please register and online firstly")

    def reportEvent(self, eventName: Any, eventDict: Any) -> None:  # noqa: N802, N803
        if self.device is not None:
            self.device.reportEvent(eventName, eventDict)
        else:
            logging.error("please register and online firstly")

    def cleanup(self) -> None:
        self.offline()


class Config:
    """The driver's configuration as read at import (the argument is kept, and not used, as in the SDK)."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def getDriverInfo(self) -> Any:  # noqa: N802
        return _driverInfo

    def getThingInfos(self) -> list[dict[str, Any]]:  # noqa: N802
        return _thingInfos


def getConfig() -> str:  # noqa: N802
    """``{"config": <driver config>, "deviceList": [thing infos]}`` as JSON text (no ``config`` without one)."""
    config: dict[str, Any] = {"deviceList": _thingInfos}
    if _driverInfo is not None:
        config = {"config": _driverInfo, "deviceList": _thingInfos}
    return json.dumps(config)


def _custom(config: Any) -> str | None:
    """A device's ``custom`` config as Link IoT Edge hands it over: JSON text (its thing model left out)."""
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in _TSL_KEYS}
        if not config:
            return None
    if config is None or isinstance(config, str):
        return config
    return json.dumps(config)


def _load() -> tuple[list[dict[str, Any]], Any]:
    infos: list[dict[str, Any]] = []
    driver_info = None
    if os.environ.get("FUNCTION_ID") is None:
        logging.error("can't get driver name: lethingaccesssdk works inside a driver function on a gateway")
        return infos, driver_info
    try:
        import edgefc.sdk as fc

        driver_info = fc.config()
        for dev in _driver.devices():
            info: dict[str, Any] = {"productKey": dev.product_key, "deviceName": dev.device_name}
            custom = _custom(dev.config)
            if custom is not None:
                info["custom"] = custom
            infos.append(info)
    except Exception as exc:  # noqa: BLE001 — the SDK logs a config it cannot read and carries on
        logging.error("get config failed, %s", exc)
    return infos, driver_info


_thingInfos, _driverInfo = _load()
try:
    os.environ["FC_DRIVER_CONFIG"] = json.dumps({"deviceList": _thingInfos})
except Exception as _exc:  # noqa: BLE001
    logging.error("set env config failed, %s", _exc)
