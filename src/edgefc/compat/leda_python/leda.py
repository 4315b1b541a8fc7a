"""``leda_python.leda``: the callback base class drivers extend, and the exceptions under their usual name."""

from __future__ import annotations

from typing import Any

from leda_python import ledaException as exception

__all__ = ["BaseDeviceCallback", "exception"]


class BaseDeviceCallback:
    """A device's callbacks; each returns ``(code, dict)``. Those a driver does not override raise
    LedaCallBackException, which the caller gets as code 100000."""

    def callService(self, name: str, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002 — the SDK's names
        raise exception.LedaCallBackException("callService is empty")

    def getProperties(self, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002
        raise exception.LedaCallBackException("getProperties is empty")

    def setProperties(self, input: Any) -> tuple[int, dict[str, Any]]:  # noqa: A002
        raise exception.LedaCallBackException("setProperties is empty")
