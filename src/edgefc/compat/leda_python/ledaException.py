"""Link IoT Edge's device-access error codes and exceptions (``leda_python.ledaException``).

Every exception carries ``value`` (the code, 100000 unless given) and ``msg``; ``str()`` shows both. The
subclasses prefix ``msg`` with their kind, as the Link IoT Edge SDK does, so logs read the same on both.
"""

from __future__ import annotations

LEDA_SUCCESS = 0
LEDA_ERROR_FAILED = 100000
LEDA_ERROR_INVAILD_PARAM = 100001  # (sic: the SDK's spelling, which drivers use)
LEDA_ERROR_NO_MEM = 100002
LEDA_ERROR_TIMEOUT = 100006
LEDA_ERROR_NOT_SUPPORT = 100008
LEDA_ERROR_PROPERTY_NOT_EXIST = 109002
LEDA_ERROR_PROPERTY_READ_ONLY = 109003
LEDA_ERROR_PROPERTY_WRITE_ONLY = 109004
LEDA_ERROR_SERVICE_NOT_EXIST = 109005
LEDA_ERROR_SERVICE_INPUT_PARAM = 109006


class LedaException(Exception):
    """The base of every device-access error: ``value`` is its code, ``msg`` its message."""

    def __init__(self, msg: object = "", value: int = LEDA_ERROR_FAILED) -> None:
        super().__init__(msg, value)
        self.value = value
        self.msg = msg

    def __str__(self) -> str:
        return f"Err: {self.msg} ErrCode: {self.value}"

    __repr__ = __str__


class _Kind(LedaException):
    prefix = ""

    def __init__(self, msg: object = "", value: int = LEDA_ERROR_FAILED) -> None:
        super().__init__(f"[{self.prefix}] {msg}", value)


class LedaParamsException(_Kind):
    """Arguments of the wrong type (a product key that is not a string)."""

    prefix = "LedaParams"


class LedaRPCMethodException(_Kind):
    """The gateway refused or did not answer (connecting a device, unregistering one twice)."""

    prefix = "LedaRPCMethod"


class LedaBusHandleException(_Kind):
    """No connection to the gateway."""

    prefix = "LedaBusHandle"


class LedaFeedDogException(_Kind):
    prefix = "LedaFeedDog"


class LedaCallBackException(_Kind):
    """A callback object that is not a ThingCallback, or a callback the driver did not implement."""

    prefix = "LedaCallBack"


class LedaReportPropertyException(_Kind):
    """A property report that is not a dict, or made while the device is offline."""

    prefix = "LedaReportProperty"


class LedaReportEventException(_Kind):
    """An event report with a bad name or arguments, or made while the device is offline."""

    prefix = "LedaReportEvent"
