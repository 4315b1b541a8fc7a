"""The SDK for code running inside a function: ``import edgefc.sdk as fc`` (CONTRACT §1).

Every call travels over the worker's own socket to the gateway: no HTTP and no token inside functions.
"""

from __future__ import annotations

from typing import Any

from edgefc.worker.main import RemoteError, current
from edgefc.worker.output import current_request as _current_request

__all__ = ["FunctionError", "config", "driver", "invoke", "publish", "things"]


def __getattr__(name: str) -> Any:
    """``fc.things`` and ``fc.driver``, imported on first use: the fork server preloads only this module."""
    if name in ("things", "driver"):
        import importlib

        return importlib.import_module(f"edgefc.sdk.{name}")
    raise AttributeError(f"module 'edgefc.sdk' has no attribute {name!r}")


class FunctionError(Exception):
    """Raised by :func:`invoke` when the called function failed; ``type`` is Handled, Unhandled, Timeout, …"""

    def __init__(self, type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.stack = list(stack or [])


def _call(op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
    try:
        return current().conn.call(op, args, timeout)
    except RemoteError as exc:
        err = exc.error
        raise FunctionError(err.get("type", "Error"), err.get("message", ""), err.get("stack")) from None


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    import json

    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def publish(topic: str, payload: Any = b"", qos: int = 0, *, confirm: bool = False) -> None:
    """Publish a message into the gateway's router as source ``function:<this function>``.

    With ``qos=1`` this returns only once the router has durably accepted the message, and raises FunctionError
    when the router refuses it (bad topic, queue full, no routing on this gateway). With ``qos=0`` (at most once,
    as MQTT's QoS 0) it returns as soon as the message is on its way to the gateway: a refusal is written into
    this function's log instead of raised; ``confirm=True`` waits for the router's answer (and raises) at QoS 0
    too, for callers that report a status (the Link IoT Edge ``IoTData.publish``).
    """
    args = {"topic": topic, "payload": _as_bytes(payload), "qos": int(qos)}
    if args["qos"] == 0 and not confirm:
        current().conn.cast("publish", args, _current_request())
    else:
        _call("publish", args)


def invoke(name: str, payload: Any = b"", invocation_type: str = "sync", timeout: float | None = None) -> Any:
    """Invoke another function: ``sync`` returns its result bytes, ``async`` its invocation id.

    Raises FunctionError (``type``, ``message``, ``stack``) when the callee fails or cannot be invoked.
    """
    if invocation_type not in ("sync", "async"):
        raise ValueError("invocation_type must be 'sync' or 'async'")
    value = _call("invoke", {"name": name, "payload": _as_bytes(payload), "type": invocation_type, "timeout": timeout})
    return value


def config() -> Any:
    """This function's ``config`` from the manifest (for a driver, its driver-level config)."""
    return current().config
