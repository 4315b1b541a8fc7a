"""Invoking functions through a real gateway: results, context, environment, errors, limits."""

from __future__ import annotations

import json
import time

from tests.e2e.gateway_harness import GatewayProcess, fn

ECHO = """
import json, os

def handler(event, context):
    if event == b"env":
        return dict(os.environ)
    if event == b"ctx":
        return {
            "request_id": context.request_id,
            "name": context.function.name, "handler": context.function.handler,
            "memory": context.function.memory, "timeout": context.function.timeout,
            "version": context.function.version, "trigger": context.trigger.type,
            "remaining": context.get_remaining_time_in_millis(),
        }
    if event == b"bytes":
        return b"\\x00\\x01raw"
    if event == b"none":
        return None
    if event == b"str":
        return "text"
    return {"echo": event.decode()}
"""


def test_invoke_returns_each_result_type(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("echo", memory_mb=64, timeout_s=2)]}, {"echo": ECHO})
    assert gateway.invoke("echo", b"hi").json() == {"echo": "hi"}
    assert gateway.invoke("echo", b"bytes").content == b"\x00\x01raw"
    assert gateway.invoke("echo", b"none").content == b""
    assert gateway.invoke("echo", b"str").content == b"text"


def test_context_fields(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "v7", "functions": [fn("echo", memory_mb=64, timeout_s=2)]}, {"echo": ECHO})
    ctx = gateway.invoke("echo", b"ctx").json()
    assert ctx["name"] == "echo" and ctx["handler"] == "index.handler"
    assert ctx["memory"] == 64 and ctx["timeout"] == 2 and ctx["version"] == "v7"
    assert ctx["trigger"] == "invoke" and len(ctx["request_id"]) >= 16
    assert 1000 < ctx["remaining"] <= 2000


def test_environment_is_the_manifest_env_and_nothing_of_the_gateway(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gw = GatewayProcess(tmp_path / "data", env={"GATEWAY_SECRET": "hunter2"}).start()
    try:
        gw.deploy({"functions": [fn("echo", env={"COLOUR": "blue"})]}, {"echo": ECHO})
        env = gw.invoke("echo", b"env").json()
        assert env["COLOUR"] == "blue" and env["FUNCTION_NAME"] == "echo"
        assert "GATEWAY_SECRET" not in env
        assert not [k for k in env if k.startswith("EDGEFC")]
    finally:
        gw.stop()


def test_handler_exception_is_502_handled_with_stack(gateway: GatewayProcess) -> None:
    src = "def handler(event, context):\n    raise ValueError('bad reading')\n"
    gateway.deploy({"functions": [fn("bad")]}, {"bad": src})
    response = gateway.invoke("bad", b"x")
    assert response.status_code == 502
    assert response.headers["X-Edgefc-Error-Type"] == "Handled"
    error = response.json()["error"]
    assert error["type"] == "Handled" and "ValueError: bad reading" in error["message"]
    assert any("raise ValueError" in line for line in error["stack"])
    assert not any("edgefc/worker" in line for line in error["stack"])
    assert gateway.invoke("bad", b"x").status_code == 502  # the instance survives a handled error


def test_timeout_answers_504_in_time_and_next_event_works(gateway: GatewayProcess) -> None:
    src = """
    import time
    def handler(event, context):
        if event == b"hang":
            time.sleep(30)
        return "ok"
    """
    gateway.deploy({"functions": [fn("slow", timeout_s=1)]}, {"slow": src})
    assert gateway.invoke("slow", b"warm").content == b"ok"
    t0 = time.monotonic()
    response = gateway.invoke("slow", b"hang")
    elapsed = time.monotonic() - t0
    assert response.status_code == 504 and response.headers["X-Edgefc-Error-Type"] == "Timeout"
    assert 1.0 <= elapsed < 1.2 + 0.3  # timeout + 200 ms, with room for a loaded CI machine's HTTP round trip
    assert gateway.invoke("slow", b"again").content == b"ok"
    status = gateway.status("slow")
    assert status["timeouts"] == 1 and status["last_exit"]["reason"] == "timeout"


def test_memory_limit_kills_reports_oom_and_others_are_unaffected(gateway: GatewayProcess) -> None:
    hog = """
    def handler(event, context):
        chunks = []
        for _ in range(400):
            chunks.append(bytearray(1024 * 1024))
            chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])
        return "survived"
    """
    gateway.deploy({"functions": [fn("hog", memory_mb=64, timeout_s=10), fn("echo")]}, {"hog": hog, "echo": ECHO})
    response = gateway.invoke("hog")
    assert response.status_code == 502, response.text
    assert response.headers["X-Edgefc-Error-Type"] == "OutOfMemory"
    assert gateway.invoke("echo", b"still").json() == {"echo": "still"}
    assert gateway.client is not None and gateway.client.get("/healthz").status_code == 200
    assert gateway.status("hog")["last_exit"]["reason"] == "oom"


def test_async_invoke_and_lookup(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("echo")]}, {"echo": ECHO})
    response = gateway.invoke("echo", b"later", headers={"X-Edgefc-Invocation-Type": "async"})
    assert response.status_code == 202
    inv_id = response.json()["invocation_id"]
    assert gateway.client is not None

    def finished() -> dict | None:  # type: ignore[type-arg]
        found = gateway.client.get(f"/v1/invocations/{inv_id}").json()  # type: ignore[union-attr]
        return found if found["state"] in ("succeeded", "failed") else None

    found = gateway.wait_for(finished, what="async invocation")
    assert found["state"] == "succeeded" and found["function"] == "echo"
    import base64

    assert json.loads(base64.b64decode(found["result_base64"])) == {"echo": "later"}
    assert gateway.client.get("/v1/invocations/nope").status_code == 404


def test_full_queue_answers_429(gateway: GatewayProcess) -> None:
    src = """
    import time
    def handler(event, context):
        time.sleep(0.5)
        return "done"
    """
    gateway.deploy({"functions": [fn("one", max_queue=0, timeout_s=3)]}, {"one": src})
    first = gateway.invoke("one", headers={"X-Edgefc-Invocation-Type": "async"})
    assert first.status_code == 202
    gateway.wait_for(lambda: gateway.status("one")["instances"] and gateway.status("one")["instances"][0]["inflight"], what="busy")
    response = gateway.invoke("one")
    assert response.status_code == 429 and response.json()["error"]["type"] == "Busy"


def test_idle_instance_is_stopped_and_started_again(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("echo", idle_timeout_s=0.5)]}, {"echo": ECHO})
    assert gateway.status("echo")["instances"] == []  # on_demand: nothing until the first event
    assert gateway.invoke("echo", b"a").status_code == 200
    assert gateway.status("echo")["state"] == "idle"
    gateway.wait_for(lambda: gateway.status("echo")["state"] == "stopped", what="idle stop")
    assert gateway.invoke("echo", b"b").json() == {"echo": "b"}
    assert gateway.status("echo")["cold_starts"] == 2


def test_scale_out_up_to_max_instances(gateway: GatewayProcess) -> None:
    src = """
    import os, time
    def handler(event, context):
        time.sleep(0.3)
        return str(os.getpid())
    """
    gateway.deploy({"functions": [fn("wide", max_instances=3, max_queue=10)]}, {"wide": src})
    ids = [gateway.invoke("wide", headers={"X-Edgefc-Invocation-Type": "async"}).json()["invocation_id"] for _ in range(6)]
    assert gateway.client is not None
    gateway.wait_for(
        lambda: all(gateway.client.get(f"/v1/invocations/{i}").json()["state"] == "succeeded" for i in ids),  # type: ignore[union-attr]
        what="all done",
    )
    status = gateway.status("wide")
    assert len(status["instances"]) == 3


def test_sdk_calls_work_while_the_module_is_imported(gateway: GatewayProcess) -> None:
    caller = """
    import edgefc.sdk as fc

    GREETING = fc.invoke("echo", b"at-import")  # made before the worker serves events

    def handler(event, context):
        return GREETING
    """
    gateway.deploy({"functions": [fn("echo")]}, {"echo": ECHO})  # the callee must be deployed already
    gateway.deploy({"functions": [fn("echo"), fn("caller")]}, {"echo": ECHO, "caller": caller})
    assert gateway.invoke("caller").json() == {"echo": "at-import"}
