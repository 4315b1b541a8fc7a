"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for simulating a thousand gateways from one process.

httpx spends about a millisecond of CPU per request; with six requests per simulated gateway and per
deployment that alone would be the benchmark. This client does only what the cloud's answers need:
Content-Length bodies, no chunking, no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any
from urllib.parse import urlencode, urlsplit


class HttpError(RuntimeError):
    """An answer with a status of 400 or more."""


class Connection:
    """One connection to ``base_url``, reopened when the server closed it; one request at a time."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      json: Any = None, body: bytes = b"") -> tuple[int, bytes]:  # fmt: skip
        """Send one request and read its answer. Raises HttpError for 4xx/5xx, OSError when the link fails."""
        if json is not None:
            body = jsonlib.dumps(json).encode()
        target = f"{path}?{urlencode(params)}" if params else path
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n{self.headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        for attempt in (0, 1):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            try:
                self._writer.write(head.encode() + body)
                status_line = await self._reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed by the server")
                status = int(status_line.split()[1])
                length, close = 0, False
                while (line := await self._reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                data = await self._reader.readexactly(length) if length else b""
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
                continue  # a kept-alive connection the server had closed: once more on a new one
            if close:
                await self.close()
            if status >= 400:
                raise HttpError(f"{method} {path}: {status} {data[:300]!r}")
            return status, data
        raise AssertionError("unreachable")

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
