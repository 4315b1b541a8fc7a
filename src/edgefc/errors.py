"""Every public error of edgefc, one small tree under :class:`EdgefcError`.

The HTTP status of each error lives here too (``http_status``), so the API maps errors in one place.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any


class EdgefcError(Exception):
    """Root of all edgefc errors. ``type`` is the name users see in API error bodies."""

    http_status = 500
    type = "InternalError"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class ValidationError(EdgefcError):
    """Raised by the manifest, bundle and configuration checks; ``problems`` lists ``path: what`` lines."""

    http_status = 422
    type = "ValidationError"

    def __init__(self, problems: list[str], *, message: str | None = None) -> None:
        self.problems = list(problems)
        text = message or ("invalid input:\n  " + "\n  ".join(self.problems))
        super().__init__(text, details=self.problems)


class BadRequest(EdgefcError):
    """Raised by the API for a request it cannot parse (malformed JSON, wrong content type, bad query)."""

    http_status = 400
    type = "BadRequest"


class PayloadTooLarge(EdgefcError):
    """Raised by the API when a request body exceeds its cap."""

    http_status = 413
    type = "PayloadTooLarge"


class Unauthorized(EdgefcError):
    """Raised by the API when the bearer token is missing or wrong."""

    http_status = 401
    type = "Unauthorized"


class NotFound(EdgefcError):
    """Raised when a named thing (function, invocation, deployment, device) does not exist."""

    http_status = 404
    type = "NotFound"


class MethodNotAllowed(EdgefcError):
    """Raised by the API for a known path asked with a method it does not serve."""

    http_status = 405
    type = "MethodNotAllowed"


class HTTPError(EdgefcError):
    """Raised by the API for any other HTTP-level refusal; ``status`` is its HTTP status."""

    type = "HTTPError"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status  # type: ignore[misc]  # per-instance status


class Conflict(EdgefcError):
    """Raised when an operation cannot run in the current state (no previous deployment to roll back to)."""

    http_status = 409
    type = "Conflict"


class DeployFailed(EdgefcError):
    """Raised by the deployer when a new function version fails to start; the deployment was rolled back."""

    http_status = 422
    type = "DeployFailed"


class Busy(EdgefcError):
    """Raised by a function manager when its queue is full (``max_queue``): HTTP 429."""

    http_status = 429
    type = "Busy"


class Unavailable(EdgefcError):
    """Raised when a function cannot take events right now (failed, stopping, gateway shutting down)."""

    http_status = 503
    type = "Unavailable"


class FunctionError(EdgefcError):
    """An event ended in a failure of the function itself.

    ``type`` is one of ``Handled`` (the handler raised), ``Unhandled`` (the instance died), ``OutOfMemory``
    and ``Timeout``; ``stack`` holds the formatted traceback lines when there is one.
    """

    http_status = 502

    def __init__(self, type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.type = type  # type: ignore[misc]  # per-instance error kind
        self.stack = list(stack or [])
        if type == "Timeout":
            self.http_status = 504  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "stack": self.stack}


class SandboxError(EdgefcError):
    """Raised by a sandbox when it cannot start an instance (fork server gone, cgroup not writable, runc error)."""

    type = "SandboxError"


class QueueFull(EdgefcError):
    """Raised by the durable queue when accepting a QoS 1 message would pass its byte limit.

    Nothing already accepted is dropped; the publisher gets this error (HTTP 503, retry later) until the
    targets drain the queue or dead letters are replayed or discarded.
    """

    http_status = 503
    type = "QueueFull"


class DeviceError(EdgefcError):
    """Raised by the device service when a driver refuses an operation (its callback's code and message),
    or when a driver's own request is refused (a report from a device it never registered): HTTP 422.

    ``code`` is the Link IoT Edge style error code (see docs/devices.md), e.g. 109002 for an unknown property.
    """

    http_status = 422
    type = "DeviceError"

    def __init__(self, code: int, message: str, *, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = int(code)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["code"] = self.code
        return body


class GatewayOffline(EdgefcError):
    """Raised by the cloud when a live request (a log query) needs a gateway that is offline or did not answer
    in time: HTTP 504."""

    http_status = 504
    type = "GatewayOffline"


class InsufficientStorage(EdgefcError):
    """Raised when the gateway's disk is full and what a request asked to keep could not be written: HTTP 507.

    Nothing of that request was kept; the message names what could not be written, never a file path.
    """

    http_status = 507
    type = "InsufficientStorage"


_SQLITE_FULL = 13


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, says the disk (or the user's quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def storage_full(what: str) -> InsufficientStorage:
    """The 507 for ``what`` (e.g. "the deployment") that could not be written to a full disk."""
    return InsufficientStorage(
        f"the gateway's disk is full: {what} could not be written and was not accepted; free space in its data "
        "dir and retry"
    )
