"""Deployments as diffs through a real gateway: unchanged functions untouched, in-flight events kept, rollback."""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tests.e2e.gateway_harness import GatewayProcess, fn

ECHO = """
import os, time

def handler(event, context):
    if event.startswith(b"sleep "):
        time.sleep(float(event.split()[1]))
    return {"pid": os.getpid(), "tag": TAG, "version": context.function.version}

TAG = "one"
"""


def echo(tag: str) -> str:
    return ECHO.replace('TAG = "one"', f"TAG = {tag!r}")


def pids(gw: GatewayProcess, name: str) -> set[int]:
    return {i["pid"] for i in gw.status(name)["instances"]}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def deployment(gw: GatewayProcess) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get("/v1/deployment").json()  # type: ignore[no-any-return]


def invocation(gw: GatewayProcess, inv_id: str) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get(f"/v1/invocations/{inv_id}").json()  # type: ignore[no-any-return]


def test_redeploy_touches_only_what_changed(gateway: GatewayProcess) -> None:
    manifest = {"version": "1", "functions": [fn("keep", mode="continuous"), fn("change", mode="continuous"), fn("drop")]}
    gateway.deploy(manifest, {"keep": echo("one"), "change": echo("one"), "drop": echo("one")})
    keep, change = pids(gateway, "keep"), pids(gateway, "change")
    assert gateway.invoke("drop").status_code == 200
    drop = pids(gateway, "drop")

    manifest = {"version": "2", "functions": [fn("keep", mode="continuous"), fn("change", mode="continuous")]}
    result = gateway.deploy(manifest, {"keep": echo("one"), "change": echo("two")}).json()
    assert result["started"] == ["change"] and result["unchanged"] == ["keep"] and result["removed"] == ["drop"]

    assert pids(gateway, "keep") == keep  # the same instance, never restarted
    assert gateway.invoke("keep").json() == {"pid": next(iter(keep)), "tag": "one", "version": "1"}
    assert gateway.status("keep")["version"] == "1"  # unchanged: keeps the version it was deployed with
    new = gateway.invoke("change").json()
    assert new["tag"] == "two" and new["version"] == "2" and new["pid"] not in change
    assert gateway.status("change")["version"] == "2"
    gateway.wait_for(lambda: not any(alive(p) for p in change | drop), what="replaced instances stopped")

    assert gateway.client is not None
    assert gateway.invoke("drop").status_code == 404
    assert gateway.client.get("/v1/functions/drop").status_code == 404
    assert [f["name"] for f in gateway.client.get("/v1/functions").json()] == ["change", "keep"]


def test_in_flight_events_of_a_changed_function_all_succeed(gateway: GatewayProcess) -> None:
    # The queue takes longer to drain (0.8 + 8 × 0.4 s) than one event may take (timeout 1 s, + 2 s grace):
    # the old version must keep serving it as long as it moves.
    slow = fn("slow", timeout_s=1, max_queue=20)
    gateway.deploy({"version": "1", "functions": [slow]}, {"slow": echo("one")})
    sync_answer: list[httpx.Response] = []
    sync = threading.Thread(target=lambda: sync_answer.append(gateway.invoke("slow", b"sleep 0.8")))
    sync.start()
    gateway.wait_for(lambda: gateway.status("slow")["instances"] and gateway.status("slow")["instances"][0]["inflight"],
                     what="sync event running")  # fmt: skip
    ids = [gateway.invoke("slow", b"sleep 0.4", headers={"X-Edgefc-Invocation-Type": "async"}).json()["invocation_id"]
           for _ in range(8)]  # fmt: skip
    gateway.wait_for(lambda: gateway.status("slow")["queued"] == 8, what="events waiting")  # during the redeploy

    gateway.deploy({"version": "2", "functions": [slow]}, {"slow": echo("two")})
    assert gateway.invoke("slow").json()["tag"] == "two"  # new events go to the new version at once
    sync.join(15)
    assert sync_answer and sync_answer[0].status_code == 200, sync_answer
    assert sync_answer[0].json()["tag"] == "one"

    def all_done() -> list[dict[str, Any]] | None:
        found = [invocation(gateway, i) for i in ids]
        return found if all(f["state"] in ("succeeded", "failed") for f in found) else None

    for found in gateway.wait_for(all_done, what="queued events done"):
        assert found["state"] == "succeeded", found
        assert json.loads(base64.b64decode(found["result_base64"]))["tag"] == "one"  # finished by the old version


def test_rollback_by_api_and_cli(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "1", "functions": [fn("f")]}, {"f": echo("one")})
    gateway.deploy({"version": "2", "functions": [fn("f"), fn("g")]}, {"f": echo("two"), "g": echo("two")})
    assert deployment(gateway)["previous_version"] == "1"
    assert gateway.client is not None

    response = gateway.client.post("/v1/deployment/rollback")
    assert response.status_code == 200, response.text
    assert response.json()["version"] == "1" and response.json()["removed"] == ["g"]
    info = deployment(gateway)
    assert info["version"] == "1" and info["previous_version"] == "2"
    assert gateway.invoke("f").json()["tag"] == "one" and gateway.invoke("g").status_code == 404

    done = gateway.cli("rollback")  # back to 2: the rollback target is always the deployment applied before
    assert done.returncode == 0, done.stderr
    assert b"2" in done.stdout
    assert deployment(gateway)["version"] == "2"
    assert gateway.invoke("f").json()["tag"] == "two" and gateway.invoke("g").json()["tag"] == "two"


def test_rollback_without_a_previous_deployment_is_409(gateway: GatewayProcess) -> None:
    assert gateway.client is not None

    def refused() -> None:
        response = gateway.client.post("/v1/deployment/rollback")  # type: ignore[union-attr]
        assert response.status_code == 409, response.text
        assert response.json()["error"]["type"] == "Conflict"
        assert "previous" in response.json()["error"]["message"]

    refused()  # no deployment at all
    gateway.deploy({"version": "only", "functions": [fn("f")]}, {"f": echo("one")})
    refused()  # exactly one
    failed = gateway.cli("rollback")
    assert failed.returncode == 2 and b"Conflict" in failed.stderr
    assert deployment(gateway)["version"] == "only"
    assert gateway.invoke("f").json()["tag"] == "one"


def test_zip_of_the_manifest_folder_deploys(gateway: GatewayProcess, tmp_path: Path) -> None:
    manifest = {"version": "zipped-1",
                "functions": [{**fn("hello", memory_mb=64), "code": "./functions/hello"},
                              {**fn("packed"), "code": "./packed.zip"}]}  # fmt: skip
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("index.py", echo("packed"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("deployment.yaml", yaml.safe_dump(manifest))
        z.writestr("functions/hello/index.py", echo("folder"))
        z.writestr("functions/hello/data/readings.txt", "21.5\n")
        z.writestr("packed.zip", inner.getvalue())
    assert gateway.client is not None
    response = gateway.client.put("/v1/deployment", content=buffer.getvalue(), headers={"Content-Type": "application/zip"})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["started"]) == ["hello", "packed"]
    assert gateway.invoke("hello").json() == {"pid": gateway.invoke("hello").json()["pid"], "tag": "folder", "version": "zipped-1"}
    assert gateway.invoke("packed").json()["tag"] == "packed"
    status = gateway.status("hello")
    assert status["version"] == "zipped-1"
    assert deployment(gateway)["version"] == "zipped-1"


def test_manifest_version_in_status_context_and_deployment(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "2024.06-rc1", "functions": [fn("f"), fn("c", mode="continuous")]}, {"f": echo("a"), "c": echo("a")})
    for name in ("f", "c"):
        assert gateway.status(name)["version"] == "2024.06-rc1"
        assert gateway.invoke(name).json()["version"] == "2024.06-rc1"
    info = deployment(gateway)
    assert info["version"] == "2024.06-rc1" and info["status"] == "applied"
    assert "2024.06-rc1" in info["manifest"]

    # Without a version the gateway names the deployment by its content: same content, same name.
    unnamed = {"functions": [fn("f")]}
    first = gateway.deploy(unnamed, {"f": echo("a")}).json()["version"]
    assert first and first != "2024.06-rc1"
    assert gateway.deploy(unnamed, {"f": echo("a")}).json()["version"] == first
    assert gateway.deploy(unnamed, {"f": echo("b")}).json()["version"] != first
