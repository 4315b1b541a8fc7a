"""The HTTP protocol the API is served with: uvicorn's httptools protocol, plus a deadline for the first bytes and a
cap on connections per client.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but only once a response was sent: a
client that connects and never sends a request would hold its socket (and a slot of ``limit_concurrency``) for
ever. Here a connection that has sent nothing within ``FIRST_BYTES_TIMEOUT_S`` is closed. Only the asyncio
``Protocol`` interface is used (``connection_made``, ``data_received``, ``connection_lost``).

uvicorn's ``limit_concurrency`` is one pool for everybody: 4 200 idle connections from one host made every request,
``/healthz`` included, answer 503. Here one client address may hold at most ``per_client`` connections; the next is
answered 429 naming the cap, and closed, so others keep their share.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edgefc.api.errors import render
from edgefc.errors import HTTPError

FIRST_BYTES_TIMEOUT_S = 30.0
PER_CLIENT = 256


class IdleClosingProtocol(HttpToolsProtocol):
    """Closes a connection that sends no bytes within ``first_bytes_timeout_s`` of being accepted, and refuses a
    client's connection past ``per_client`` open ones (use :func:`protocol` for a class with its own count)."""

    first_bytes_timeout_s = FIRST_BYTES_TIMEOUT_S
    per_client = PER_CLIENT
    clients: ClassVar[Counter[str]] = Counter()  # open connections by client address

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._first_bytes: asyncio.TimerHandle | None = None
        peer = transport.get_extra_info("peername")
        self._client: str | None = peer[0] if isinstance(peer, tuple) else None
        if self._client is not None:
            self.clients[self._client] += 1
            if self.clients[self._client] > self.per_client:
                self._refuse(transport)
                return
        self._first_bytes = asyncio.get_running_loop().call_later(self.first_bytes_timeout_s, transport.close)

    def _refuse(self, transport: asyncio.Transport) -> None:
        status, headers, body = render(
            HTTPError(429, f"too many connections from {self._client}: at most {self.per_client} at once per client")
        )
        head = b"".join(b"%s: %s\r\n" % header for header in [*headers, (b"connection", b"close")])
        transport.write(b"HTTP/1.1 %d Too Many Requests\r\n%s\r\n%s" % (status, head, body))
        transport.close()

    def data_received(self, data: bytes) -> None:
        if self._first_bytes is not None:
            self._first_bytes.cancel()
            self._first_bytes = None
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._first_bytes is not None:
            self._first_bytes.cancel()
            self._first_bytes = None
        if self._client is not None:
            self.clients[self._client] -= 1
            if not self.clients[self._client]:
                del self.clients[self._client]
            self._client = None
        super().connection_lost(exc)


def protocol(per_client: int = PER_CLIENT, first_bytes_timeout_s: float = FIRST_BYTES_TIMEOUT_S) -> type[IdleClosingProtocol]:
    """An :class:`IdleClosingProtocol` class with these limits and a connection count of its own (one per server)."""
    return type(
        "IdleClosingProtocol",
        (IdleClosingProtocol,),
        {"per_client": per_client, "first_bytes_timeout_s": first_bytes_timeout_s, "clients": Counter()},
    )
