"""What a function can send the gateway over its worker socket is typed and capped before anything is allocated
for it (issue 15: ``invoke`` with ``payload: 3_000_000_000`` made the gateway allocate it; 30 connections
announcing 63 MiB frames took it to 2 GB before any hello was checked)."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn

ATTACK = r"""
import json
from edgefc.worker.main import RemoteError, current

def handler(event, context):
    conn = current().conn
    out = {}
    for label, op, args in json.loads(event):
        if label == "huge_int_payload":
            args["payload"] = 100_000_000
        try:
            out[label] = ["ok", repr(conn.call(op, args, 20))]
        except RemoteError as exc:
            out[label] = [exc.error.get("type"), exc.error.get("message")]
    return out
"""

ECHO = """
def handler(event, context):
    return event
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path / "data", isolation="process").start()
    yield gw
    gw.stop()


def test_sdk_arguments_are_typed_and_capped(gateway: GatewayProcess) -> None:
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
    gateway.deploy({"functions": [fn("attack", timeout_s=30), fn("echo")]}, {"attack": ATTACK, "echo": ECHO})
    rss_before = psutil.Process(gateway.pid).memory_info().rss
    calls = [
        ["huge_int_payload", "invoke", {"name": "echo"}],
        ["dict_payload", "invoke", {"name": "echo", "payload": {"a": 1}}],
        ["too_big_publish", "publish", {"topic": "t", "payload": "x" * 300_000}],
        ["bad_qos", "publish", {"topic": "t", "payload": "x", "qos": 7}],
        ["unknown_arg", "invoke", {"name": "echo", "payload": "x", "evil": 1}],
        ["nan_timeout", "invoke", {"name": "echo", "timeout": float("nan")}],
        [
            "deep_props",
            "thing.set_properties",
            {"product_key": "p", "device_name": "d", "properties": {"a": deep}},
        ],
        ["unknown_op", "format_disk", {}],
        ["fine", "invoke", {"name": "echo", "payload": b"hi".decode()}],
    ]
    response = gateway.invoke("attack", json.dumps(calls).encode())
    assert response.status_code == 200, response.text
    seen = response.json()
    for label, field in [("huge_int_payload", "payload"), ("dict_payload", "payload"), ("too_big_publish", "payload"),
                         ("bad_qos", "qos"), ("unknown_arg", "evil"), ("nan_timeout", "timeout"),
                         ("deep_props", "properties"), ("unknown_op", "format_disk")]:  # fmt: skip
        kind, message = seen[label]
        assert kind == "ValidationError" and field in message, (label, seen[label])
    assert seen["fine"][0] == "ok"
    # The refused 100 MB was never allocated (a bytes(100_000_000) copy into a frame would be ≥ 100 MB).
    assert psutil.Process(gateway.pid).memory_info().rss - rss_before < 50 * 2**20


def _worker_socket(data_dir: Path) -> Path:
    short = data_dir / "run" / "worker.sock"
    if short.exists():
        return short
    found = [p for p in Path("/tmp").glob("edgefc-*/worker.sock") if p.stat().st_mtime > time.time() - 60]
    assert found, "no worker socket"
    return max(found, key=lambda p: p.stat().st_mtime)


def test_unauthenticated_connections_cannot_announce_big_frames(gateway: GatewayProcess) -> None:
    path = _worker_socket(gateway.data_dir)
    conns = []
    try:
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            s.sendall(struct.pack(">I", 63 * 2**20) + b"\x00" * 1024)  # a 63 MiB "hello"
            conns.append(s)
        for s in conns:
            s.settimeout(5)
            t0 = time.monotonic()
            assert (
                s.recv(1) == b""
            )  # closed by the gateway on the header alone, not after a 10 s hello timeout
            assert time.monotonic() - t0 < 3
    finally:
        for s in conns:
            s.close()
    assert gateway.client is not None
    assert gateway.client.get("/healthz").status_code == 200
