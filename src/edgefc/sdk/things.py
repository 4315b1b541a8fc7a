"""Application side of devices: ``fc.things`` reads and writes devices through their drivers (CONTRACT §1).

Each call goes to the gateway, which hands it to the callback of the driver that owns the device and brings
its answer back::

    import edgefc.sdk as fc

    fc.things.set_properties("pk2", "fan-1", {"on": True})
    fc.things.get_properties("pk1", "sensor-1", ["temperature"])   # → {"temperature": 21.5}

Failures raise a :class:`ThingError` subclass: :class:`NotFound` (no such device), :class:`Unavailable` (its
driver is not running or the device is offline), :class:`Timeout` (no answer in time), :class:`DeviceError`
(the driver refused: its ``code`` and ``message``), :class:`DriverFailed` (the driver's callback raised).
"""

from __future__ import annotations

from typing import Any

from edgefc.devices import codes
from edgefc.worker.main import RemoteError, current

__all__ = [
    "DeviceError", "DriverFailed", "NotFound", "ThingError", "Timeout", "Unavailable",
    "call_service", "find", "get_properties", "set_properties",
]  # fmt: skip


class ThingError(Exception):
    """A device operation failed; ``type`` names the failure, ``code`` is its Link IoT Edge style number."""

    type = "ThingError"

    def __init__(self, message: str, code: int = codes.UNKNOWN, *, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = int(code)
        self.stack = list(stack or [])


class DeviceError(ThingError):
    """The driver refused the operation with ``code`` and ``message``.

    A driver raises this from its callbacks to refuse (``raise DeviceError(109003, "read-only")``); the caller
    gets it back with the same code and message. Driver calls the gateway refuses raise it too (a report for
    a device that was never registered: code 109000).
    """

    type = "DeviceError"

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"refused with code {code}", code)


class NotFound(ThingError):
    """No such device in the applied deployment (or, for a driver, not one assigned to it)."""

    type = "NotFound"


class Unavailable(ThingError):
    """The device's driver has no running instance, or the device is not online."""

    type = "Unavailable"


class Timeout(ThingError):
    """The driver did not answer within the timeout; the driver keeps running."""

    type = "Timeout"


class DriverFailed(ThingError):
    """The driver's callback raised instead of answering; ``stack`` holds its traceback."""

    type = "Handled"


_BY_TYPE: dict[str, type[ThingError]] = {
    "NotFound": NotFound, "Unavailable": Unavailable, "Timeout": Timeout, "Handled": DriverFailed,
}  # fmt: skip


def error_from(err: dict[str, Any]) -> ThingError:
    """The exception for an error dict the gateway sent back."""
    kind = str(err.get("type", "Error"))
    message = str(err.get("message", ""))
    if kind == "DeviceError":
        return DeviceError(int(err.get("code", codes.UNKNOWN)), message)
    cls = _BY_TYPE.get(kind)
    details = err.get("details")
    given = details.get("code") if isinstance(details, dict) else None
    code = given if isinstance(given, int) else codes.BY_ERROR_TYPE.get(kind, codes.UNKNOWN)
    if cls is None:
        found = ThingError(f"{kind}: {message}", code, stack=err.get("stack"))
        found.type = kind
        return found
    return cls(message, code, stack=err.get("stack"))


def gateway_call(op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
    """An SDK call to the gateway; raises ThingError (by type) when the gateway refuses it.

    Works while the module is still being imported too (a driver registering at import time, as Link IoT
    Edge drivers do): the worker's connection then reads its own reply.
    """
    try:
        return current().conn.call(op, args, timeout)
    except RemoteError as exc:
        raise error_from(exc.error) from None


def _timeout_arg(timeout: float | None) -> dict[str, Any]:
    return {} if timeout is None else {"timeout": float(timeout)}


def _wait(timeout: float | None) -> float | None:
    """How long the SDK waits for the gateway: past the gateway's own deadline, which answers first."""
    return None if timeout is None else float(timeout) + 5.0


def get_properties(product_key: str, device_name: str, keys: list[str] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Current values of ``keys`` (all the driver offers for an empty list), as the driver answers them.

    ``timeout`` (seconds) bounds the driver's answer; the gateway's default is 5 s. Raises ThingError.
    """
    args = {"product_key": product_key, "device_name": device_name, "keys": list(keys or []), **_timeout_arg(timeout)}
    return gateway_call("thing.get_properties", args, _wait(timeout))  # type: ignore[no-any-return]


def set_properties(product_key: str, device_name: str, properties: dict[str, Any], *,
                   timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Have the driver set ``properties``; returns its answer dict. Raises ThingError (DeviceError on refusal)."""
    args = {"product_key": product_key, "device_name": device_name, "properties": dict(properties), **_timeout_arg(timeout)}
    return gateway_call("thing.set_properties", args, _wait(timeout))  # type: ignore[no-any-return]


def call_service(product_key: str, device_name: str, name: str, args: dict[str, Any] | None = None, *,
                 timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Run service ``name`` of the device with ``args``; returns the driver's answer dict. Raises ThingError."""
    call = {"product_key": product_key, "device_name": device_name, "name": name, "args": dict(args or {}),
            **_timeout_arg(timeout)}  # fmt: skip
    return gateway_call("thing.call_service", call, _wait(timeout))  # type: ignore[no-any-return]


def find(tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Devices carrying every tag in ``tags`` (all devices for none), each as ``GET /v1/devices`` shows it."""
    return gateway_call("thing.find", {"tags": dict(tags or {})})  # type: ignore[no-any-return]
