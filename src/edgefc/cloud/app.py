"""The cloud's HTTP app: errors mapped in one place, admin and gateway authentication, the console mounted.

Admin routes accept the admin token (``Authorization: Bearer``) or a console session, as decided by
``edgefc.cloud.console.session_user(request)``; gateway routes accept an instance's own token with its id in
``X-Edgefc-Instance``.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefc import __version__
from edgefc.api.app import error_response
from edgefc.api.body import read_body
from edgefc.cloud.service import CloudService
from edgefc.errors import BadRequest, EdgefcError, PayloadTooLarge, Unauthorized

log = logging.getLogger("edgefc.cloud")

MAX_JSON_BYTES = 1 << 20
INSTANCE_HEADER = "x-edgefc-instance"


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _console() -> Any:
    """The console module when it is installed (it is optional for the API)."""
    try:
        from edgefc.cloud import console
    except ImportError:
        return None
    return console


async def require_admin(request: Request) -> None:
    """Dependency of every admin route. Raises Unauthorized."""
    token = _bearer(request)
    if token:
        if hmac.compare_digest(token.encode(), request.app.state.admin_token.encode()):
            return
        raise Unauthorized("wrong bearer token (see <cloud data dir>/admin.token)")
    console = _console()
    if console is not None and console.session_user(request):
        return
    raise Unauthorized("missing bearer token (see <cloud data dir>/admin.token) or console session")


async def require_gateway(request: Request) -> str:
    """Dependency of every agent route: the instance id, its token checked. Raises Unauthorized."""
    instance_id = request.headers.get(INSTANCE_HEADER, "")
    token = _bearer(request)
    if not instance_id or not token:
        raise Unauthorized("a gateway sends its instance id in X-Edgefc-Instance and its token as a bearer token")
    await service_of(request).fleet.authenticate(instance_id, token)
    return instance_id


def service_of(request: Request) -> CloudService:
    return request.app.state.service  # type: ignore[no-any-return]


async def read_json(request: Request, limit: int = MAX_JSON_BYTES, *, empty: Any = None) -> Any:
    """The request's body parsed as JSON (``empty`` when there is none). Raises PayloadTooLarge, BadRequest."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the cap of {limit}")
    raw = await read_body(request, limit)
    if not raw:
        return empty
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None


async def json_body(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request's JSON object. Raises PayloadTooLarge, BadRequest."""
    data = await read_json(request, limit, empty={})
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def create_app(service: CloudService, *, admin_token: str) -> FastAPI:
    """The cloud API over ``service``, with the console mounted when it is installed."""
    from edgefc.cloud import agent_routes, routes

    # edgefc sets up no OpenTelemetry provider; FastAPI's native telemetry would still look for one (and read
    # the environment) on every request, a measurable share of a fleet's long polls and reports.
    app = FastAPI(title="edgefc cloud", version=__version__, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})  # fmt: skip
    app.state.service = service
    app.state.admin_token = admin_token

    @app.exception_handler(EdgefcError)
    async def _edgefc_error(request: Request, exc: EdgefcError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()]
        return error_response(BadRequest("invalid request: " + "; ".join(problems), details=problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse({"error": {"type": kind, "message": str(exc.detail)}}, status_code=exc.status_code)

    @app.get("/healthz", tags=["cloud"])
    async def healthz() -> dict[str, Any]:
        """Liveness; needs no token."""
        return {"status": "ok", "version": __version__}

    # The agent's routes first: a fleet's requests are most of the traffic, and routes are matched in order.
    app.include_router(agent_routes.router)
    app.include_router(routes.router, dependencies=[Depends(require_admin)])
    console = _console()
    if console is not None:
        console.mount(app, service=service, admin_token=admin_token)
    return app
