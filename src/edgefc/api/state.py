"""The gateway an API request is served by, typed (the app keeps it on ``app.state.gateway``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from edgefc.gateway.core import Gateway


def gateway_of(request: Request) -> Gateway:
    """The composition root serving ``request``."""
    gateway: Gateway = request.app.state.gateway
    return gateway
