"""The gateway's HTTP API (CONTRACT §4): one FastAPI app, errors mapped in one place, a bearer token on all but /healthz."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from edgefc import __version__
from edgefc.api import deployment, devices, functions, messages, observe
from edgefc.api.fastpath import InvokeFastPath
from edgefc.errors import BadRequest, EdgefcError, FunctionError, PayloadTooLarge, Unauthorized

log = logging.getLogger("edgefc.api")

OPEN_PATHS = frozenset({"/healthz"})


def error_response(exc: EdgefcError) -> JSONResponse:
    headers = {"X-Edgefc-Error-Type": exc.type} if isinstance(exc, FunctionError) else None
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)


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
                await error_response(Unauthorized(f"{what} bearer token (see <data_dir>/admin.token)"))(scope, receive, send)
                return
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await error_response(PayloadTooLarge(f"request body of {int(length)} bytes exceeds the cap of {self.max_body}"))(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def create_app(gateway: Any) -> FastAPI:
    """The API of one gateway (``gateway`` is an edgefc.gateway.core.Gateway)."""
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
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse({"error": {"type": kind, "message": str(exc.detail)}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse({"error": {"type": "InternalError", "message": str(exc)}}, status_code=500)

    @app.get("/healthz", tags=["gateway"])
    async def healthz() -> dict[str, Any]:
        """Liveness; needs no token."""
        return {"status": "ok", "version": __version__}

    app.include_router(deployment.router)
    app.include_router(functions.router)
    for module in (observe, messages, devices):
        app.include_router(module.router)
    app.add_middleware(TokenAndSizeGuard, token=gateway.token, max_body=gateway.config.limits.max_body_bytes)
    return app


def create_server_app(gateway: Any) -> ASGIApp:
    """What the server runs: the token guard, then the invoke fast path, then the FastAPI app.

    The fast path sits outside FastAPI's own middleware stack, so a warm invoke pays for two small ASGI layers
    only; every other path goes on to FastAPI (whose own guard checks the token again, cheaply).
    """
    app = create_app(gateway)
    fast = InvokeFastPath(app, gateway=gateway)
    return TokenAndSizeGuard(fast, token=gateway.token, max_body=gateway.config.limits.max_body_bytes)

