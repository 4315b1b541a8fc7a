"""Putting the console into the cloud's app: its routes, its static files, its refusal handler."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from edgefc.cloud.console import auth, functions, gateway, instances
from edgefc.cloud.console.render import STATIC_DIR, STATIC_PREFIX
from edgefc.cloud.console.session import CSRF_HEADER, UNSAFE_METHODS
from edgefc.cloud.console.web import Console, Refusal
from edgefc.cloud.service import CloudService

CONSOLE_PATHS = ("/console/", "/login", "/logout")


def mount(app: FastAPI, *, service: CloudService, admin_token: str) -> Console:
    """Add the console's pages under ``/``, ``/login``, ``/logout`` and ``/console/…`` to ``app``."""
    console = Console(service, admin_token)
    app.state.console = console

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return exc.response

    app.add_exception_handler(Refusal, refused)
    for module in (auth, functions, instances, gateway):
        app.include_router(module.routes(console))
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="console-static")
    return console


def session_user(request: Request) -> bool:
    """Whether the request comes from a signed-in console session (with its CSRF header on unsafe methods)."""
    console = getattr(request.app.state, "console", None)
    if not isinstance(console, Console):
        return False
    session = console.keys.signed_in(request)
    if session is None:
        return False
    if request.method in UNSAFE_METHODS:
        return console.keys.csrf_ok(session, request.headers.get(CSRF_HEADER))
    return True


def is_console_path(path: str) -> bool:
    """Whether ``path`` is served by the console (which checks its own session) rather than the API."""
    return path == "/" or path.startswith(CONSOLE_PATHS)
