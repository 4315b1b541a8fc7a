"""The console's session cookie and CSRF tokens, both signed with a key derived from the admin token.

A session is stateless (issued-at, expiry and a random id, HMAC-signed), so every cloud replica that shares the
admin token accepts it and rotating the admin token signs everyone out. The CSRF token is the HMAC of the
session id: a form from another site cannot know it, and it needs no server-side storage either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

COOKIE = "edgefc_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Session:
    """A browser's session: its random id, when it ends (epoch seconds), and whether it signed in.

    A browser gets an anonymous session on the sign-in page so that the sign-in form carries a CSRF token too;
    signing in issues a new one (a new id, so a planted cookie never becomes a signed-in one).
    """

    sid: str
    expires: float
    auth: bool


class SessionKeys:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(self, admin_token: str) -> None:
        self._admin = admin_token.encode()
        self._key = hmac.new(self._admin, b"edgefc console session v1", hashlib.sha256).digest()

    def token_ok(self, offered: str) -> bool:
        """Whether ``offered`` is the admin token (constant-time)."""
        return hmac.compare_digest(offered.strip().encode(), self._admin)

    def issue(self, *, auth: bool, now: float | None = None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        now = time.time() if now is None else now
        session = Session(sid=secrets.token_urlsafe(18), expires=now + SESSION_TTL_S, auth=auth)
        payload = {"sid": session.sid, "exp": session.expires, "auth": auth}
        # Unpadded, so the cookie value needs no quoting (Starlette quotes values holding '=').
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
        return f"{body.decode()}.{self._sign(body)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie value carries, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4)))
            session = Session(sid=str(data["sid"]), expires=float(data["exp"]), auth=data["auth"] is True)
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < (time.time() if now is None else now):
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token every form of this session carries."""
        return hmac.new(self._key, b"csrf:" + session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        """Whether ``offered`` is this session's CSRF token (constant-time)."""
        return bool(offered) and hmac.compare_digest(str(offered), self.csrf(session))

    def from_request(self, request: Request) -> Session | None:
        """The request's session (signed in or not), or None."""
        return self.read(request.cookies.get(COOKIE))

    def signed_in(self, request: Request) -> Session | None:
        """The request's session when it signed in, else None."""
        session = self.from_request(request)
        return session if session is not None and session.auth else None

    def _sign(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()
