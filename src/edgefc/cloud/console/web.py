"""The console's request plumbing: who is signed in, the CSRF check on every form, flashes and refusals.

Pages call :meth:`Console.viewer` (GET) or :meth:`Console.form` (POST); both raise :class:`Refusal`, which
the handler :func:`mount` registers turns into a redirect to sign-in or a 403 page. Nothing changes before the
CSRF field has been checked.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, unquote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from edgefc.cloud.console.render import SECURITY_HEADERS, Renderer
from edgefc.cloud.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, SessionKeys
from edgefc.cloud.service import CloudService
from edgefc.errors import EdgefcError, ValidationError

FLASH_COOKIE = "edgefc_flash"
MAX_FORM_BYTES = 64 * 1024 * 1024  # a code upload is a form; the cloud's own bundle cap applies after


class Refusal(Exception):
    """Raised by the console's checks; carries the response the browser gets instead of the page."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def cookie_args(request: Request) -> dict[str, Any]:
    """Attributes of every console cookie: HttpOnly, SameSite=Strict, Secure when served over TLS."""
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}


def redirect(url: str, *, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    """A 303 to ``url``, optionally carrying a one-time message for the next page."""
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if flash and request is not None:
        response.set_cookie(FLASH_COOKIE, quote(flash[:300]), max_age=60, **cookie_args(request))
    return response


class Console:
    """The console's shared parts: session keys, the renderer and the cloud service (called in-process)."""

    def __init__(self, service: CloudService, token: str) -> None:
        self.service = service
        self.keys = SessionKeys(token)
        self.renderer = Renderer(self.keys)

    def viewer(self, request: Request) -> Session:
        """The signed-in session of a page request. Raises Refusal (a redirect to sign-in) without one."""
        session = self.keys.signed_in(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Refusal(RedirectResponse(f"/login?next={quote(target)}", status_code=303,
                                           headers=SECURITY_HEADERS))
        return session

    async def form(self, request: Request, *, signed_in: bool = True) -> tuple[Session, FormData]:
        """The posted form of a signed-in session, after its CSRF field was checked.

        Raises Refusal (403) for a missing session or a missing or wrong CSRF field, before anything changes.
        """
        session = self.keys.signed_in(request) if signed_in else self.keys.from_request(request)
        if session is None:
            raise Refusal(self.refused(request, "You are not signed in (or your session ended). Sign in again."))
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_FORM_BYTES:
            raise Refusal(self.refused(request, f"The form is larger than {MAX_FORM_BYTES} bytes.", status=413))
        form = await request.form(max_part_size=MAX_FORM_BYTES)
        offered = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not self.keys.csrf_ok(session, offered if isinstance(offered, str) else None):
            raise Refusal(self.refused(request, "The form is missing its CSRF field or it does not match your "
                                                "session; nothing was changed. Reload the page and try again."))
        return session, form

    def refused(self, request: Request, text: str, *, status: int = 403) -> Response:
        """A small page (or JSON for fetch) saying why a request was refused."""
        if "application/json" in request.headers.get("accept", ""):
            body = {"error": {"type": "Forbidden" if status == 403 else "Refused", "message": text}}
            return Response(json.dumps(body), status_code=status, media_type="application/json",
                            headers=SECURITY_HEADERS)
        session = self.keys.from_request(request)
        return self.renderer.page(request, "refused.html", session if session and session.auth else None,
                                  status=status, text=text, flash=None)

    def page(self, request: Request, template: str, session: Session, *, status: int = 200,
             **context: Any) -> HTMLResponse:
        """A page for a signed-in session, with any one-time message from the previous request."""
        flash = context.pop("flash", None)
        pending = request.cookies.get(FLASH_COOKIE)
        if flash is None and pending:
            flash = {"kind": "ok", "text": unquote(pending), "lines": []}
        response = self.renderer.page(request, template, session, status=status, flash=flash, **context)
        if pending:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def sign_in_cookie(self, response: Response, request: Request, *, auth: bool) -> Session:
        """Set a new session cookie on ``response``."""
        value, session = self.keys.issue(auth=auth)
        response.set_cookie(COOKIE, value, **cookie_args(request))
        return session


def problem_flash(exc: EdgefcError) -> dict[str, Any]:
    """An error from the service as the red box at the top of a page."""
    lines = exc.problems if isinstance(exc, ValidationError) else []
    text = "The cloud refused this:" if lines else exc.message
    return {"kind": "error", "text": text, "lines": lines}


Handler = Callable[..., Awaitable[Response]]


def shows_errors(console: Console) -> Callable[[Handler], Handler]:
    """Decorate a page: a service error it does not handle itself becomes an error page with its status."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                return await handler(request, *args, **kwargs)
            except EdgefcError as exc:
                session = console.viewer(request)
                return console.page(request, "refused.html", session, status=exc.http_status,
                                    text=exc.message, flash=None)

        return wrapped

    return decorate
