"""A log follower (SSE) that never reads is dropped after ``logs.follow_stall_s``: it does not hold its slot,
its queue and a blocked stream for as long as it stays connected."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.e2e.gateway_harness import GatewayProcess, fn

NOISY = "def handler(event, context):\n    for i in range(1500):\n        print('x' * 8000)\n    return b'done'\n"


def test_a_follower_that_never_reads_is_dropped(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", config={"logs": {"follow_stall_s": 1.0}}).start()
    try:
        gw.deploy({"functions": [fn("noisy", timeout_s=30)]}, {"noisy": NOISY})
        host, port = gw.url.removeprefix("http://").rsplit(":", 1)
        follower = socket.socket()
        follower.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once: a reader that stopped
        follower.connect((host, int(port)))
        follower.sendall(f"GET /v1/functions/noisy/logs?follow=1 HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {gw.token}\r\n\r\n".encode())  # fmt: skip
        try:
            for _ in range(2):
                assert gw.invoke("noisy").content == b"done"
            gw.wait_for(lambda: "dropped a follower of noisy's log" in gw.log_path.read_text(), timeout=20,
                        what="the gateway to drop the follower")  # fmt: skip
            follower.settimeout(10)
            deadline = time.monotonic() + 20
            while follower.recv(1 << 20):  # what was buffered, then the end: the gateway closed it
                assert time.monotonic() < deadline, "the dropped follower's connection stayed open"
        finally:
            follower.close()
        assert gw.invoke("noisy").content == b"done"
    finally:
        gw.stop()
