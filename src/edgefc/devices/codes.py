"""Error codes of device operations, as Link IoT Edge's SDKs number them (``0`` is success).

The numbers are those of Link IoT Edge's device-access SDKs (``LE_ERROR_*``/``LEDA_ERROR_*`` in the C and Java
SDKs' ``le_error.h``/``LedaErrorCode``, ``LEDA_*`` in the Python SDK's ``leda_python/ledaException.py``); a driver
may answer with any other non-zero code of its own, which reaches edgefc's own SDK unchanged. Imported by the
gateway and, inside function instances, by ``edgefc.sdk`` and the compatibility shims.

100008 is "service unreachable" in the C and Java SDKs but "not supported" in the Python one, which edgefc's
Python shims mirror; edgefc therefore never answers 100008 itself: an unreachable driver or device is 109000
(not registered) or 109001 (offline), as Link IoT Edge reports it to applications.
"""

from __future__ import annotations

SUCCESS = 0
UNKNOWN = 100000  # LEDA_ERROR_FAILED: an error with no better code (a driver callback that raised)
INVALID_PARAM = 100001  # bad arguments
NO_MEM = 100002
TIMEOUT = 100006  # the driver did not answer in time
PARAM_RANGE_OVERFLOW = 100007  # a value outside its thing model's range or length
NOT_SUPPORT = 100008  # Python SDK: not supported (C/Java: service unreachable)
DEVICE_UNREGISTERED = 109000  # unknown device, or not registered by its driver (or its driver is not running)
DEVICE_OFFLINE = 109001  # registered but offline
PROPERTY_NOT_EXIST = 109002
PROPERTY_READ_ONLY = 109003
PROPERTY_WRITE_ONLY = 109004
SERVICE_NOT_EXIST = 109005
SERVICE_INPUT_PARAM = 109006
INVALID_JSON = 109007
INVALID_TYPE = 109008  # a value of the wrong type for its thing model

# The code an edgefc error type stands for, when a caller wants a number (lecoresdk, lethingaccesssdk).
BY_ERROR_TYPE = {
    "NotFound": DEVICE_UNREGISTERED,
    "Unavailable": DEVICE_OFFLINE,
    "Timeout": TIMEOUT,
    "ValidationError": INVALID_PARAM,
    "BadRequest": INVALID_PARAM,
    "Handled": UNKNOWN,
}
