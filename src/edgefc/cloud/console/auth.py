"""Sign-in with the admin token into a session cookie, and sign-out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from edgefc.cloud.console.render import SECURITY_HEADERS
from edgefc.cloud.console.session import COOKIE
from edgefc.cloud.console.web import Console, cookie_args, redirect

HOME = "/console/instances"


def _safe_next(target: str | None) -> str:
    """Only a path of this console may follow sign-in (no open redirect to another site)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


def routes(console: Console) -> APIRouter:
    """``/``, ``GET/POST /login`` and ``POST /logout``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def home(request: Request) -> Response:
        return redirect(HOME if console.keys.signed_in(request) else "/login")

    @router.get("/login")
    async def login_page(request: Request, next: str | None = None) -> Response:
        session = console.keys.from_request(request)
        if session is not None and session.auth:
            return redirect(_safe_next(next))
        cookie = None
        if session is None:
            # An anonymous session, only so that the sign-in form carries a CSRF token like every other form.
            cookie, session = console.keys.issue(auth=False)
        response = console.renderer.page(request, "login.html", session, next=_safe_next(next), error="",
                                         flash=None)
        if cookie is not None:
            response.set_cookie(COOKIE, cookie, **cookie_args(request))
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        session, form = await console.form(request, signed_in=False)
        token = form.get("token")
        target = _safe_next(str(form.get("next") or ""))
        if not isinstance(token, str) or not console.keys.token_ok(token):
            return console.renderer.page(request, "login.html", session, status=401, next=target,
                                         error="That is not the admin token.", flash=None)
        response = redirect(target)
        console.sign_in_cookie(response, request, auth=True)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await console.form(request)
        response = redirect("/login")
        response.delete_cookie(COOKIE, path="/")
        response.headers.update(SECURITY_HEADERS)
        return response

    return router
