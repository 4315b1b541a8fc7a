"""The gateway's HTTP API (CONTRACT §4): one Starlette app, errors rendered in one place, a bearer token on all but
/healthz, and ``/openapi.json`` built from the same routes that serve."""

from __future__ import annotations

import hmac
import sqlite3
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edgefc import __version__
from edgefc.api import deployment, devices, functions, invoke, messages, observe
from edgefc.api.errors import error_response, from_http, send_error, unexpected
from edgefc.api.routing import Router
from edgefc.errors import EdgefcError, PayloadTooLarge, Unauthorized

if TYPE_CHECKING:
    from edgefc.gateway.core import Gateway

OPEN_PATHS = frozenset({"/healthz"})


class TokenAndSizeGuard:
    """ASGI middleware: the bearer token (constant-time compare) and the body size cap, before any route runs."""

    def __init__(self, app: ASGIApp, *, token: str, max_body: int) -> None:
        self.app = app
        self.token = f"Bearer {token}".encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS:
            auth = b""
            length = None
            for k, v in scope["headers"]:
                if k == b"authorization":
                    auth = v
                elif k == b"content-length":
                    length = v
            if not hmac.compare_digest(auth, self.token):
                what = "missing" if not auth else "wrong"
                await send_error(Unauthorized(f"{what} bearer token (see <data_dir>/admin.token)"), send)
                return
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await send_error(PayloadTooLarge(f"request body of {int(length)} bytes exceeds the cap of {self.max_body}"), send)
                return
        await self.app(scope, receive, send)


async def _edgefc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EdgefcError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(from_http(exc.status_code, str(exc.detail)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(unexpected(exc, f"{request.method} {request.url.path}", path=request.url.path))


def routed_app(routers: list[Router], state: Any, *, title: str = "edgefc gateway",
               extra: dict[str, dict[str, Any]] | None = None) -> Starlette:  # fmt: skip
    """A Starlette app serving ``routers`` with the API's error rendering, ``state`` on ``app.state.gateway``,
    and ``/openapi.json`` documenting every route (plus ``extra`` paths served in front of the app)."""
    routes: list[Route] = [route for r in routers for route in r.routes]
    schema: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        if not schema:
            schema.update(openapi_schema(routers, title=title, extra=extra or {}))
        return JSONResponse(schema)

    routes.append(Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False))
    app = Starlette(routes=routes, exception_handlers={
        EdgefcError: _edgefc_error, StarletteHTTPException: _http_error, Exception: _unexpected,
        # Errors of storage get an answer without passing through Starlette's server-error layer, which re-raises
        # (and drops the connection) after answering: a full disk is an expected 507, not a crash.
        OSError: _unexpected, sqlite3.Error: _unexpected,
    })  # fmt: skip
    app.state.gateway = state
    return app


def openapi_schema(routers: list[Router], *, title: str, extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routers``; ``extra`` paths go right after ``/v1/functions/{name}``."""
    paths: dict[str, dict[str, Any]] = {}
    for router in routers:
        for path, method, operation in router.operations:
            paths.setdefault(path, {})[method] = operation
            if path == "/v1/functions/{name}":
                paths.update(extra)
    for path, item in extra.items():
        paths.setdefault(path, item)
    return {"openapi": "3.1.0", "info": {"title": title, "version": __version__}, "paths": paths,
            "components": {"schemas": {"Error": invoke.ERROR_SCHEMA}}}  # fmt: skip


_health = Router(tags=["gateway"])


@_health.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness; needs no token."""
    return {"status": "ok", "version": __version__}


def create_app(gateway: Gateway) -> Starlette:
    """The routed part of the API (every path but invoke, which :func:`create_server_app` puts in front)."""
    routers = [_health, deployment.router, functions.router, observe.router, messages.router, devices.router]
    return routed_app(routers, gateway, extra={invoke.PATH: {"post": invoke.OPERATION}})


def create_server_app(gateway: Gateway) -> ASGIApp:
    """What the server runs: the token guard, then the invoke route, then the FastAPI app."""
    app = create_app(gateway)
    return TokenAndSizeGuard(invoke.InvokeRoute(app, gateway=gateway), token=gateway.token,
                             max_body=gateway.config.limits.max_body_bytes)  # fmt: skip
