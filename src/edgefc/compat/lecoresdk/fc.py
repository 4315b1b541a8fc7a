"""``lecoresdk.Client().invoke_function(params)``: invoke another function of this gateway.

As the SDK (aliyun/linkedge-core-sdk-python, ``lecoresdk/fc.py``) does:

- ``params``: ``functionId`` (its last path segment, or an ARN's function name, is the edgefc function), or
  ``serviceName`` + ``functionName``; ``invocationType`` ``"Sync"`` (the default) or ``"Async"``; ``payload``
  ``str`` or ``bytes``; ``invokerContext`` a dict or text (base64 JSON, JSON or plain), which the callee reads
  as ``context.invoker_context``.
- Bad params (an unknown ``invocationType``, no function, a payload of another type) log an error and return
  the invalid-parameter code :data:`INVALID_PARAM` instead of a dict.
- ``Sync`` returns ``{"statusCode", "functionError", "payload"}``: ``payload`` is the callee's answer in base64
  text (``lecoresdk.IoTData`` decodes it the same way); ``functionError`` is ``""`` on success and
  ``HandledInvocationError`` (the handler raised) or ``UnhandledInvocationError`` (timeout, out of memory,
  crash) otherwise, with status 200 and a base64 JSON ``{"errorMessage", "errorType", "stackTrace"}`` payload;
  a function that cannot run at all gets the HTTP status of why (404 unknown, 429 busy, 503 unavailable).
- ``Async`` returns ``"success"`` once the event is accepted (durably), ``"fail"`` otherwise.

The SDK's numeric codes come from Link IoT Edge's runtime, which is not public; edgefc answers with the
device-access SDK's numbers for the same meanings (100001 invalid parameter, 100000 failed).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import edgefc.sdk as _fc

INVOCATION_TYPE_SYNC = "Sync"
INVOCATION_TYPE_ASYNC = "Async"
SUCCESS = 0
FAILED = 100000
INVALID_PARAM = 100001

_STATUS = {"NotFound": 404, "Busy": 429, "Unavailable": 503, "ValidationError": 400, "BadRequest": 400}
_FUNCTION_FAILURES = ("Handled", "Unhandled", "Timeout", "OutOfMemory")


def _given(params: dict[str, Any], key: str) -> bool:
    return params.get(key) not in (None, "")


def function_name(function_id: str) -> str:
    """The function a Link IoT Edge function id names: its last path segment (``service/function``,
    ``acs:fc:region:account:services/service/functions/function``)."""
    return function_id.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def invoker_context(value: Any) -> Any:
    """What the callee sees of an ``invokerContext``: a dict as is, text decoded from base64 JSON or JSON."""
    if not isinstance(value, str | bytes):
        return value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        return json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Client:
    """Invokes functions: ``Client().invoke_function(params)``."""

    def invoke_function(self, params: Any) -> dict[str, Any] | str | int:
        """Invoke a function (see the module doc for params and answers); never raises for a failed function."""
        if not isinstance(params, dict):
            logging.error("invalid param: invoke_function takes a dict, got %s", type(params).__name__)
            return INVALID_PARAM
        kind = params.get("invocationType", INVOCATION_TYPE_SYNC)
        if kind not in (INVOCATION_TYPE_SYNC, INVOCATION_TYPE_ASYNC):
            logging.error("invalid param: invocationType must be 'Sync' or 'Async', got %r", kind)
            return INVALID_PARAM
        if _given(params, "functionId"):
            function_id = params["functionId"]
        elif (_given(params, "serviceName") and _given(params, "functionName")
              and isinstance(params["serviceName"], str) and isinstance(params["functionName"], str)):  # fmt: skip
            function_id = f"services/{params['serviceName']}/functions/{params['functionName']}"
        else:
            logging.error("invalid param: give functionId, or serviceName and functionName")
            return INVALID_PARAM
        if not isinstance(function_id, str):
            logging.error("invalid param: functionId must be a string, got %s", type(function_id).__name__)
            return INVALID_PARAM
        payload = params.get("payload", "")
        if not isinstance(payload, str | bytes):
            logging.error("invalid param: payload must be str or bytes, got %s", type(payload).__name__)
            return INVALID_PARAM
        args = {
            "name": function_name(function_id),
            "payload": payload.encode("utf-8") if isinstance(payload, str) else payload,
            "type": "async" if kind == INVOCATION_TYPE_ASYNC else "sync",
            "invoker_context": invoker_context(params["invokerContext"]) if "invokerContext" in params else None,
        }
        try:
            result = _fc._call("compat.invoke", args)
        except _fc.FunctionError as exc:
            if kind == INVOCATION_TYPE_ASYNC:
                logging.error("invoke_function %s failed: %s", args["name"], exc)
                return "fail"
            body = json.dumps({"errorMessage": exc.message, "errorType": exc.type, "stackTrace": exc.stack}).encode()
            if exc.type in _FUNCTION_FAILURES:
                error = "HandledInvocationError" if exc.type == "Handled" else "UnhandledInvocationError"
                return {"statusCode": 200, "functionError": error, "payload": _b64(body)}
            return {"statusCode": _STATUS.get(exc.type, 500), "functionError": "", "payload": _b64(body)}
        if kind == INVOCATION_TYPE_ASYNC:
            return "success"
        return {"statusCode": 200, "functionError": "", "payload": _b64(bytes(result or b""))}
