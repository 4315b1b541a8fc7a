"""Error codes of device operations, as Link IoT Edge's SDKs number them (``0`` is success).

The numbers follow the Link IoT Edge device-access SDK (``LE_ERROR_*``/``LEDA_ERROR_*``); a driver may answer
with any other non-zero code of its own, which reaches the caller unchanged. Imported by the gateway and, inside
function instances, by ``edgefc.sdk`` and the compatibility shims.
"""

from __future__ import annotations

SUCCESS = 0
UNKNOWN = 100000  # an error with no better code (a driver callback that raised)
INVALID_PARAM = 100001  # bad arguments
TIMEOUT = 100006  # the driver did not answer in time
SERVICE_UNREACHABLE = 100008  # the driver is not running, or the device is offline
DEVICE_UNREGISTERED = 109000  # unknown device, or not registered by its driver
DEVICE_OFFLINE = 109001  # registered but offline
PROPERTY_NOT_EXIST = 109002
PROPERTY_READ_ONLY = 109003
PROPERTY_WRITE_ONLY = 109004
SERVICE_NOT_EXIST = 109005
SERVICE_INPUT_PARAM = 109006
INVALID_JSON = 109007
INVALID_TYPE = 109008

# The code an edgefc error type stands for, when a caller wants a number (lecoresdk, lethingaccesssdk).
BY_ERROR_TYPE = {
    "NotFound": DEVICE_UNREGISTERED,
    "Unavailable": SERVICE_UNREACHABLE,
    "Timeout": TIMEOUT,
    "ValidationError": INVALID_PARAM,
    "BadRequest": INVALID_PARAM,
    "Handled": UNKNOWN,
}
