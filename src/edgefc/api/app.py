"""The gateway's HTTP API (CONTRACT §4): one FastAPI app, errors rendered in one place, a bearer token on all but /healthz."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from edgefc import __version__
from edgefc.api import deployment, devices, functions, invoke, messages, observe
from edgefc.api.errors import error_response, from_http, send_error, unexpected
from edgefc.errors import BadRequest, EdgefcError, PayloadTooLarge, Unauthorized

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


def create_app(gateway: Gateway) -> FastAPI:
    """The routed part of the API (every path but invoke, which :func:`create_server_app` puts in front)."""
    app = FastAPI(title="edgefc gateway", version=__version__, docs_url=None, redoc_url=None)
    app.state.gateway = gateway

    @app.exception_handler(EdgefcError)
    async def _edgefc_error(request: Request, exc: EdgefcError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {err.get('msg')}")
        return error_response(BadRequest("invalid request: " + "; ".join(problems), details=problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(from_http(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return error_response(unexpected(exc, f"{request.method} {request.url.path}"))

    @app.get("/healthz", tags=["gateway"])
    async def healthz() -> dict[str, Any]:
        """Liveness; needs no token."""
        return {"status": "ok", "version": __version__}

    for module in (deployment, functions, observe, messages, devices):
        app.include_router(module.router)
    _document_invoke(app)
    return app


def _document_invoke(app: FastAPI) -> None:
    """Put the invoke route (served in front of FastAPI) into the app's /openapi.json, after the functions paths."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            paths: dict[str, Any] = {}
            for path, item in schema["paths"].items():
                paths[path] = item
                if path == "/v1/functions/{name}":
                    paths[invoke.PATH] = {"post": invoke.OPERATION}
            paths.setdefault(invoke.PATH, {"post": invoke.OPERATION})
            schema["paths"] = paths
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = invoke.ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_server_app(gateway: Gateway) -> ASGIApp:
    """What the server runs: the token guard, then the invoke route, then the FastAPI app."""
    app = create_app(gateway)
    return TokenAndSizeGuard(invoke.InvokeRoute(app, gateway=gateway), token=gateway.token,
                             max_body=gateway.config.limits.max_body_bytes)  # fmt: skip
