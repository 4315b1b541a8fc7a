"""The gateway SIGKILLed mid-work: no worker outlives it, and the next gateway on the data dir picks everything up."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.gateway_harness import GatewayProcess, fn

SOURCE = """
import os, time

def handler(event, context):
    if event.startswith(b"sleep "):
        time.sleep(float(event.split()[1]))
    return {"pid": os.getpid(), "version": context.function.version, "event": event.decode()}
"""


def gone(pid: int, created: float) -> bool:
    """True when the process ``pid`` that started at ``created`` no longer exists (a reused pid is another one)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() != created or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def snapshot(pid: int) -> dict[int, float]:
    """Every descendant of ``pid`` (fork server, workers) with its start time."""
    found: dict[int, float] = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            pass
    return found


def instance_pids(gw: GatewayProcess, name: str) -> set[int]:
    return {i["pid"] for i in gw.status(name)["instances"]}


def invocation(gw: GatewayProcess, inv_id: str) -> dict[str, Any]:
    assert gw.client is not None
    response = gw.client.get(f"/v1/invocations/{inv_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_sigkilled_gateway_leaves_no_workers_and_the_next_one_restores_the_deployment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = GatewayProcess(data).start()
    try:
        gw.deploy({"version": "v1", "functions": [fn("svc", mode="continuous"), fn("ondemand", idle_timeout_s=60)]},
                  {"svc": SOURCE, "ondemand": SOURCE})  # fmt: skip
        assert gw.invoke("ondemand", b"warm").status_code == 200
        listed = instance_pids(gw, "svc") | instance_pids(gw, "ondemand")
        assert len(listed) == 2
        family = snapshot(gw.pid)
        assert listed <= set(family)  # the workers are the gateway's (via its fork server)
        assert len(family) >= 3
        gw.sigkill()

        # Dead means exited: a zombie waiting for pid 1 to reap it runs nothing any more.
        gw.wait_for(lambda: all(gone(p, t) for p, t in family.items()), timeout=5, what="every worker gone")
    finally:
        gw.stop()

    again = GatewayProcess(data).start()
    try:
        assert again.client is not None
        info = again.client.get("/v1/deployment").json()
        assert info["version"] == "v1"
        status = again.status("svc")
        assert status["state"] == "running" and len(status["instances"]) == 1  # continuous: up before any event
        assert status["version"] == "v1"
        assert not instance_pids(again, "svc") & listed
        answer = again.invoke("svc", b"hi").json()
        assert answer["version"] == "v1" and answer["event"] == "hi"
        assert again.invoke("ondemand", b"x").json()["version"] == "v1"
        assert again.status("ondemand")["cold_starts"] == 1
    finally:
        again.stop()


def test_async_invocation_accepted_before_a_sigkill_finishes_after_the_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = GatewayProcess(data).start()
    try:
        gw.deploy({"functions": [fn("slow", timeout_s=10, max_queue=10)]}, {"slow": SOURCE})
        accepted = [gw.invoke("slow", b"sleep 1", headers={"X-Edgefc-Invocation-Type": "async"}) for _ in range(2)]
        assert [r.status_code for r in accepted] == [202] * 2
        ids = [r.json()["invocation_id"] for r in accepted]
        gw.wait_for(lambda: invocation(gw, ids[0])["state"] == "running", what="first invocation running")
        # "running" is written once the event is taken from the store, which can be before its cold start is done.
        killed_pids = gw.wait_for(lambda: {p for p in instance_pids(gw, "slow") if p} or None, what="its instance's pid")
        assert killed_pids
        gw.sigkill()  # mid-event: the first is running, the second waits behind it
    finally:
        gw.stop()

    again = GatewayProcess(data).start()
    try:

        def finished() -> list[dict[str, Any]] | None:
            found = [invocation(again, i) for i in ids]
            return found if all(f["state"] in ("succeeded", "failed") for f in found) else None

        for found in again.wait_for(finished, timeout=15, what="accepted invocations finished"):
            assert found["state"] == "succeeded", found
            result = json.loads(base64.b64decode(found["result_base64"]))
            assert result["event"] == "sleep 1" and result["pid"] not in killed_pids  # run by the new gateway
            assert found["finished_at"] > found["started_at"] > time.time() - 60
    finally:
        again.stop()


def test_a_function_that_cannot_start_at_boot_does_not_stop_the_others(tmp_path: Path) -> None:
    """Restoring is not deploying: what worked before is started, and what cannot start yet is retried."""
    flag = tmp_path / "not-ready"
    source = SOURCE + f"\ndef init(context):\n    if os.path.exists({str(flag)!r}):\n        raise RuntimeError('device not up')\n"
    data = tmp_path / "data"
    gw = GatewayProcess(data).start()
    try:
        gw.deploy({"version": "v1", "functions": [fn("svc", mode="continuous", initializer="index.init"), fn("other")]},
                  {"svc": source, "other": SOURCE})  # fmt: skip
    finally:
        gw.stop()
    flag.touch()  # at the next boot the device svc talks to is not up yet
    again = GatewayProcess(data).start()
    try:
        assert again.client is not None
        assert sorted(f["name"] for f in again.client.get("/v1/functions").json()) == ["other", "svc"]
        assert again.invoke("other", b"x").status_code == 200
        flag.unlink()
        again.wait_for(lambda: again.status("svc")["state"] == "running", timeout=15, what="svc retried and running")
    finally:
        again.stop()
