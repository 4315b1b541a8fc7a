"""Rendering console pages: one Jinja2 environment (autoescaped), security headers, the page context.

Every value reaches HTML through Jinja's autoescape, so a function named ``<script>`` or a log line holding
markup shows as text; live updates send fragments rendered by the same templates.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from edgefc import __version__
from edgefc.cloud.console.charts import sparkline
from edgefc.cloud.console.session import CSRF_FIELD, Session, SessionKeys
from edgefc.cloud.console.settings import ISOLATIONS, MODES, RUNTIMES, options

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/console/static"

# No inline script or style anywhere: scripts and styles come from our own static files only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: Any) -> str:
    """An ISO time or epoch seconds (or milliseconds) as ``2026-12-01 04:31:07Z``; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        # Device property times are epoch milliseconds (the Link IoT convention); everything else seconds.
        try:
            moment = dt.datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return str(value)
    elif isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _bytes(value: Any) -> str:
    """``123456789`` → ``117.7 MiB``."""
    if not isinstance(value, int | float):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


class Renderer:
    """Renders templates into responses with the security headers and the per-session context."""

    def __init__(self, keys: SessionKeys) -> None:
        self.keys = keys
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["bytes"] = _bytes
        self.env.globals.update(static=STATIC_PREFIX, edgefc_version=__version__, csrf_field=CSRF_FIELD,
                                sparkline=sparkline, runtimes=options(RUNTIMES), modes=options(MODES),
                                isolations=options(ISOLATIONS))

    def fragment(self, template: str, **context: Any) -> str:
        """A template rendered to a string (pages and the fragments live updates send)."""
        return self.env.get_template(template).render(**context)

    def page(self, request: Request, template: str, session: Session | None, *, status: int = 200,
             **context: Any) -> HTMLResponse:
        """A whole page as a response, with the CSRF token of ``session`` for its forms."""
        csrf = self.keys.csrf(session) if session is not None else ""
        signed_in = session is not None and session.auth
        html = self.fragment(template, request=request, csrf=csrf, signed_in=signed_in,
                             here=request.url.path, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
