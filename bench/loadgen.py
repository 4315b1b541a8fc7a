"""The HTTP load generator, run as its own process so that it never shares an interpreter with a server.

``python bench/loadgen.py latency URL --n 3000`` — sequential POSTs on one keep-alive ``http.client``
connection, one latency per request (ms) after a warm-up. ``python bench/loadgen.py throughput URL --conc 8
--duration 5`` — ``conc`` keep-alive connections (asyncio protocols on uvloop, a pre-built request, only the
status line and Content-Length parsed), each sending its next request when the last answer is complete.
Both print one JSON object on stdout. Run by path, it imports only the standard library and uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import time
from typing import Any, cast
from urllib.parse import urlsplit


def latency(url: str, n: int, warmup: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Sequential requests; returns ``{"ms": [...], "errors": k}``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    path = parts.path or "/"
    samples: list[float] = []
    errors = 0
    for i in range(warmup + n):
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            errors += 1
        if i >= warmup:
            samples.append(round(elapsed * 1000, 4))
    conn.close()
    return {"ms": samples, "errors": errors}


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as the previous answer is complete."""

    def __init__(
        self, request: bytes, stats: dict[str, int], stop: asyncio.Event, done: asyncio.Future[None]
    ) -> None:
        self.request = request
        self.stats = stats
        self.stop = stop
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = next(
                (int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), None
            )
            if length is None:
                raise RuntimeError(f"response without Content-Length: {head!r}")
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.stats["requests"] += 1
            if head[0].split(" ", 2)[1] != "200":
                self.stats["errors"] += 1
            if self.stop.is_set():
                assert self.transport is not None
                self.transport.close()
                return
            assert self.transport is not None
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _throughput(
    url: str, conc: int, duration: float, warmup: float, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    stats = {"requests": 0, "errors": 0}
    stop = asyncio.Event()
    done: list[asyncio.Future[None]] = []
    for _ in range(conc):
        fut: asyncio.Future[None] = loop.create_future()
        done.append(fut)
        await loop.create_connection(lambda f=fut: _Client(request, stats, stop, f), host, port)  # type: ignore[misc]
    await asyncio.sleep(warmup)
    start_requests, start_errors = stats["requests"], stats["errors"]
    cpu0, t0 = os.times(), time.perf_counter()
    await asyncio.sleep(duration)
    requests, errors = stats["requests"] - start_requests, stats["errors"] - start_errors
    elapsed, cpu1 = time.perf_counter() - t0, os.times()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*done), 30)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"requests": requests, "errors": errors, "seconds": elapsed, "client_cpu_s": round(cpu, 3),
            "total_requests": stats["requests"]}  # fmt: skip


def throughput(
    url: str, conc: int, duration: float, warmup: float, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    """``conc`` connections for ``warmup + duration`` seconds; counts only what completes within ``duration``."""
    try:
        import uvloop

        return uvloop.run(_throughput(url, conc, duration, warmup, headers, body))
    except ImportError:
        return asyncio.run(_throughput(url, conc, duration, warmup, headers, body))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "throughput"])
    parser.add_argument("url")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--warmup-n", type=int, default=300)
    parser.add_argument("--conc", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--body", default="x")
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    body = args.body.encode()
    if args.mode == "latency":
        result = latency(args.url, args.n, args.warmup_n, headers, body)
    else:
        result = throughput(args.url, args.conc, args.duration, args.warmup_s, headers, body)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
