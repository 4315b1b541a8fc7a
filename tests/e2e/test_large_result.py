"""A result over the worker frame cap gets a clear "result too large" error at once, not a late timeout."""

from __future__ import annotations

import time

from tests.e2e.gateway_harness import GatewayProcess, fn

BIG = "def handler(event, context):\n    return b'x' * (100 * 1024 * 1024) if event == b'big' else b'small'\n"


def test_a_100_mb_result_is_refused_clearly(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("big", timeout_s=30, memory_mb=512)]}, {"big": BIG})
    started = time.monotonic()
    answer = gateway.invoke("big", b"big")
    assert time.monotonic() - started < 15  # not the event's whole timeout
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert "result too large" in error["message"]
    assert gateway.invoke("big", b"small").content == b"small"  # the function still serves
