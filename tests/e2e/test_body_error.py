"""A module body that keeps running (Link IoT Edge style) and then raises: the exit says why, with its traceback
in the function's own log, and the keep-alive restarts the instance."""

from __future__ import annotations

from typing import Any

from tests.e2e.gateway_harness import GatewayProcess, fn

BODY = """
import time

def handler(event, context):
    return b"ok"

time.sleep(1.0)  # a polling loop's first wait: the instance is ready meanwhile
raise RuntimeError("sensor lost")
"""


def log_messages(gw: GatewayProcess, name: str) -> list[str]:
    assert gw.client is not None
    entries: list[dict[str, Any]] = gw.client.get(f"/v1/functions/{name}/logs", params={"limit": 200}).json()["entries"]
    return [e["message"] for e in entries]


def test_a_running_body_that_raises_is_an_init_error_exit_with_its_traceback(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("poller", mode="continuous")]}, {"poller": BODY})
    status = gateway.wait_for(lambda: (s := gateway.status("poller"))["last_exit"] and s, timeout=20, what="an exit")
    assert status["last_exit"]["reason"] == "init_error"
    notes = gateway.wait_for(
        lambda: [m for m in log_messages(gateway, "poller") if "module body raised after the instance was ready" in m],
        what="the exit's note in the function's log",
    )
    assert "RuntimeError: sensor lost" in notes[0]
    assert 'raise RuntimeError("sensor lost")' in notes[0]  # the traceback, not only the message
    gateway.wait_for(lambda: gateway.status("poller")["restarts"] >= 2, timeout=20, what="keep-alive restarts")
