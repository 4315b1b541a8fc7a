"""The API's HTTP protocol closes a connection that never sends a request, and leaves working ones alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from edgefc.gateway.http import IdleClosingProtocol


class Quick(IdleClosingProtocol):
    first_bytes_timeout_s = 0.3


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = _Server(uvicorn.Config(hello, http=Quick, lifespan="off", log_level="warning", timeout_keep_alive=30))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_a_silent_connection_is_closed_and_a_talking_one_is_served(port: int) -> None:
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
    talking_r, talking_w = await asyncio.open_connection("127.0.0.1", port)
    talking_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(talking_r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(silent_r.read(), 5) == b""  # closed by the gateway, well before any timeout
    await asyncio.sleep(0.5)  # past the first-bytes deadline: the served connection stays open (keep-alive)
    talking_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(talking_r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    for w in (silent_w, talking_w):
        w.close()
