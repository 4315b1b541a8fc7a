"""The HTTP protocol the API is served with: uvicorn's httptools protocol, plus a deadline for the first bytes.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but only once a response was sent: a
client that connects and never sends a request would hold its socket (and a slot of ``limit_concurrency``) for
ever. Here a connection that has sent nothing within ``FIRST_BYTES_TIMEOUT_S`` is closed. Only the asyncio
``Protocol`` interface is used (``connection_made``, ``data_received``, ``connection_lost``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FIRST_BYTES_TIMEOUT_S = 30.0


class IdleClosingProtocol(HttpToolsProtocol):
    """Closes a connection that sends no bytes within ``first_bytes_timeout_s`` of being accepted."""

    first_bytes_timeout_s = FIRST_BYTES_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._first_bytes: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.first_bytes_timeout_s, transport.close
        )

    def data_received(self, data: bytes) -> None:
        if self._first_bytes is not None:
            self._first_bytes.cancel()
            self._first_bytes = None
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._first_bytes is not None:
            self._first_bytes.cancel()
            self._first_bytes = None
        super().connection_lost(exc)
