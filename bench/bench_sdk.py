"""Invoking a function from a function through the SDK, against a raw Unix-socket round trip in Python.

``invoke_sdk_p50_ms``: a ``caller`` function runs ``edgefc.sdk.invoke("hello", b"x")`` ``calls`` times in one
event and times each call with ``time.perf_counter`` inside the handler; the list comes back as the result.
Each call is caller worker → gateway → ``hello`` worker and back. The baseline is the least such a trip
could cost: a length-prefixed frame echoed by a server thread over a Unix socket pair, in this process.

Run alone with ``python -m bench.bench_sdk``.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from typing import Any

from bench.figure import at_most, figure, percentile
from bench.gateway import BenchGateway, function

log = logging.getLogger("bench.sdk")

CALLS = 2000
WARMUP = 100
HELLO = "def handler(event, context):\n    return b'hello'\n"
CALLER = """
import json
import time

import edgefc.sdk as fc


def handler(event, context):
    calls, warmup = (int(x) for x in event.split(b","))
    for _ in range(warmup):
        fc.invoke("hello", b"x")
    ms = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = fc.invoke("hello", b"x")
        ms.append(round((time.perf_counter() - t0) * 1000, 4))
        assert result == b"hello", result
    return {"ms": ms}
"""
_HEADER = struct.Struct(">I")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the peer closed the socket")
        data += chunk
    return bytes(data)


def _recv_frame(sock: socket.socket) -> bytes:
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return _recv_exact(sock, length)


def _echo(sock: socket.socket) -> None:
    try:
        while True:
            frame = _recv_frame(sock)
            sock.sendall(_HEADER.pack(len(frame)) + frame)
    except (EOFError, OSError):
        pass
    finally:
        sock.close()


def unix_round_trips(calls: int, warmup: int = WARMUP) -> list[float]:
    """Milliseconds per framed round trip to an echo thread over a Unix socket pair."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = threading.Thread(target=_echo, args=(theirs,), name="bench-echo", daemon=True)
    server.start()
    frame = _HEADER.pack(1) + b"x"
    ms = []
    try:
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            ours.sendall(frame)
            _recv_frame(ours)
            if i >= warmup:
                ms.append((time.perf_counter() - t0) * 1000)
    finally:
        ours.close()
        server.join(5)
    return ms


def run(calls: int = CALLS, warmup: int = WARMUP) -> dict[str, dict[str, Any]]:
    """Deploy ``hello`` and ``caller`` on a process-isolation gateway and time ``calls`` SDK invokes."""
    log.info("baseline: %d framed round trips over a Unix socket pair", calls)
    base = unix_round_trips(calls, warmup)
    with BenchGateway(isolation="process") as gw:
        gw.deploy([function("hello", memory_mb=128), function("caller", memory_mb=128, timeout_s=60)],
                  {"hello": HELLO, "caller": CALLER})  # fmt: skip
        gw.invoke("hello", b"warm")
        log.info("caller: %d sdk invokes of hello inside one event", calls)
        status, body = gw.invoke("caller", f"{calls},{warmup}".encode())
        if status != 200:
            raise RuntimeError(f"the caller function failed: {status} {body[:2000]!r}")
    ms = json.loads(body)["ms"]
    return {
        "invoke_sdk_p50_ms": figure(
            percentile(ms, 50), "ms", n=len(ms), target=at_most(0.3), baseline=percentile(base, 50),
            baseline_what="length-prefixed frame echoed by a thread over a Unix socket pair, p50",
            p99_ms=round(percentile(ms, 99), 3), baseline_p99_ms=round(percentile(base, 99), 4),
            how="edgefc.sdk.invoke('hello', b'x') timed with perf_counter inside the caller's handler",
        ),
    }  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
