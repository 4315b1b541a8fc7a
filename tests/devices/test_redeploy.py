"""Devices across deployments: a redeployed driver keeps its devices online, moves and removals, failed deploys."""

from __future__ import annotations

from typing import Any

from tests.e2e.gateway_harness import GatewayProcess, fn

DRIVER = """
import os
import edgefc.sdk as fc

CLIENTS = []

def init(context):
    if os.environ.get("BROKEN"):
        raise RuntimeError("this version cannot start")
    for d in fc.driver.devices():
        client = fc.driver.ThingClient(d.product_key, d.device_name, on_get=lambda keys: {"by": os.environ["VERSION"]})
        client.register_and_online()
        CLIENTS.append(client)

def handler(event, context):
    return {"version": os.environ["VERSION"]}
"""


def drv(name: str, version: str, **env: str) -> dict[str, Any]:
    return fn(name, mode="continuous", initializer="index.init", memory_mb=64, env={"VERSION": version, **env})


def dev(dn: str, driver: str) -> dict[str, Any]:
    return {"product_key": "pk", "device_name": dn, "driver": driver}


def states(gw: GatewayProcess) -> dict[str, str]:
    assert gw.client is not None
    return {d["device_name"]: d["state"] for d in gw.client.get("/v1/devices").json()}


def by(gw: GatewayProcess, dn: str) -> Any:
    assert gw.client is not None
    response = gw.client.get(f"/v1/devices/pk/{dn}/properties")
    return response.json().get("by") if response.status_code == 200 else response.status_code


def test_redeploys_keep_moved_and_remove_devices(gateway: GatewayProcess) -> None:
    sources = {"a": DRIVER, "b": DRIVER}
    gateway.deploy({"functions": [drv("a", "1"), drv("b", "1")], "devices": [dev("d1", "a"), dev("d2", "a"), dev("d3", "b")]},
                   sources)  # fmt: skip
    assert states(gateway) == {"d1": "online", "d2": "online", "d3": "online"}

    # A new version of driver a (its old instance drains and exits after the new one registered), d2 moves to b,
    # d3 goes away and d4 comes.
    gateway.deploy({"functions": [drv("a", "2"), drv("b", "2")], "devices": [dev("d1", "a"), dev("d2", "b"), dev("d4", "b")]},
                   sources)  # fmt: skip
    gateway.wait_for(lambda: gateway.invoke("a").json()["version"] == "2", what="a at version 2")
    assert states(gateway) == {"d1": "online", "d2": "online", "d4": "online"}
    old_gone = gateway.wait_for(lambda: len(gateway.status("a")["instances"]) == 1, what="the old instance of a gone")
    assert old_gone and states(gateway)["d1"] == "online"  # the old instance's exit did not take d1 offline
    assert (by(gateway, "d1"), by(gateway, "d2"), by(gateway, "d4")) == ("2", "2", "2")

    # A deployment that fails to start (a's new version raises in init) changes nothing, devices included.
    response = gateway.deploy({"functions": [drv("a", "3", BROKEN="1"), drv("b", "2")], "devices": [dev("d1", "b")]},
                              sources, expect=422)  # fmt: skip
    assert response.json()["error"]["type"] == "DeployFailed"
    assert states(gateway) == {"d1": "online", "d2": "online", "d4": "online"}
    assert by(gateway, "d1") == "2" and gateway.status("a")["version"] != "3"

    # A deployment that only changes the devices of a running driver restarts that driver, which registers its
    # new list; the other driver is left alone.
    pid_a = gateway.status("a")["instances"][0]["pid"]
    pid_b = gateway.status("b")["instances"][0]["pid"]
    gateway.deploy({"functions": [drv("a", "2"), drv("b", "2")], "devices": [dev("d1", "a"), dev("d2", "b"), dev("d5", "b")]},
                   sources)  # fmt: skip
    assert states(gateway) == {"d1": "online", "d2": "online", "d5": "online"}
    assert by(gateway, "d5") == "2"
    assert gateway.status("a")["instances"][0]["pid"] == pid_a and gateway.status("b")["instances"][0]["pid"] != pid_b
    assert gateway.status("b")["restarts"] == 0  # a restart asked for, not a crash


def test_a_restarted_gateway_restores_its_devices(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [drv("a", "1")], "devices": [dev("d1", "a")]}, {"a": DRIVER})
    assert states(gateway) == {"d1": "online"}
    assert gateway.stop() == 0
    gateway.start()
    assert states(gateway) == {"d1": "online"}  # restored from the data dir: the driver registered it again
    assert by(gateway, "d1") == "1"
