"""The one error renderer of the API: every error answer, from any layer, is written here (CONTRACT §4 shape)."""

from __future__ import annotations

import json
import logging

from starlette.responses import Response
from starlette.types import Send

from edgefc.errors import (
    EdgefcError,
    FunctionError,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    disk_full,
    storage_full,
)

log = logging.getLogger("edgefc.api")

JSON = (b"content-type", b"application/json")


def render(exc: EdgefcError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of ``exc``: ``{"error": {...}}``, plus ``X-Edgefc-Error-Type`` for a function's failure."""
    body = json.dumps({"error": exc.to_dict()}, ensure_ascii=False).encode()
    headers = [JSON, (b"content-length", str(len(body)).encode())]
    if isinstance(exc, FunctionError):
        headers.append((b"x-edgefc-error-type", exc.type.encode()))
    return exc.http_status, headers, body


# What a request that failed on a full disk could not write, by path (the message never names a file).
_WRITES = {"/v1/deployment": "the deployment", "/v1/messages": "the message", "/v1/deployment/rollback": "the rollback"}


def unexpected(exc: BaseException, what: str, *, path: str = "") -> EdgefcError:
    """An error no layer expected, logged with its traceback, as the 500 it is answered with; a full disk is the
    507 of :func:`edgefc.errors.storage_full`, naming ``what`` (or what ``path`` writes)."""
    if disk_full(exc):
        log.warning("disk full serving %s: %s", what, exc)
        return storage_full(_WRITES.get(path, what))
    log.error("unexpected error serving %s", what, exc_info=exc)
    return EdgefcError(str(exc) or type(exc).__name__)


def from_http(status: int, detail: str) -> EdgefcError:
    """Starlette's HTTP-level refusals (no such path, wrong method) in the same shape."""
    if status == 404:
        return NotFound(detail)
    if status == 405:
        return MethodNotAllowed(detail)
    return HTTPError(status, detail)


def error_response(exc: EdgefcError) -> Response:
    status, headers, body = render(exc)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


async def send_error(exc: EdgefcError, send: Send) -> None:
    """Answer an ASGI request with ``exc``."""
    status, headers, body = render(exc)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
