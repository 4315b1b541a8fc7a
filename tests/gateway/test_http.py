"""The API's HTTP protocol closes a connection that never sends a request, leaves working ones alone, and keeps one
client from taking every connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from edgefc.gateway.http import protocol

Quick = protocol(per_client=5, first_bytes_timeout_s=0.3)


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


async def test_one_client_gets_429_past_its_share_and_its_connections_come_back(port: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    refused_r, refused_w = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(refused_r.read(), 5)  # answered and closed
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429"), answer
    assert b"at most 5 at once per client" in body and b'"type": "HTTPError"' in body, body
    refused_w.close()
    held_r, held_w = held[0]  # the held ones still work
    held_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(held_r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)  # the closed ones are counted out: a new connection is served
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    w.close()
