"""Nothing of a container leaks, however it ends: stop, crash, timeout kill, OOM kill, or a SIGKILLed gateway.

"Nothing" is checked on the host itself: runc's list under the gateway's root, cgroups in every hierarchy,
network namespaces, veths, IPAM leases, iptables rules and CNI chains, bundles and processes
(see ``leftovers`` in ``test_containers.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.e2e.test_containers import (
    SERVER,
    container_id,
    free_port,
    host_leftovers,
    http_get,
    instance_ids,
    leftovers,
    refused,
    require_containers,
    runc_ids,
    wait_clean,
)

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root, pytest.mark.needs_runc, pytest.mark.timeout(90)]

ENDS = """
import os, time

def handler(event, context):
    if event == b"crash":
        os._exit(3)
    if event == b"hang":
        time.sleep(30)
    if event == b"hog":
        chunks = []
        for _ in range(400):
            chunks.append(bytearray(1024 * 1024))
            chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])
    return "ok"
"""


def _warm_container(gw: GatewayProcess, name: str) -> str:
    """Make sure ``name`` has a running instance; its container id."""
    assert gw.invoke(name, b"ok").content == b"ok"
    cid = container_id(gw.data_dir, instance_ids(gw, name)[0])
    assert cid in runc_ids(gw.data_dir)
    return cid


def test_stop_crash_timeout_and_oom_each_leave_nothing(tmp_path: Path) -> None:
    require_containers()
    gw = GatewayProcess(tmp_path / "data", isolation="container").start()
    try:
        port = free_port()
        manifest = {"functions": [
            # A mapped port, so every end also has iptables rules to take back.
            fn("fc-ends", memory_mb=48, timeout_s=1, container={"ports": [f"{port}:8080/tcp"]}),
            fn("fc-keeper", mode="continuous"),
        ]}  # fmt: skip
        gw.deploy(manifest, {"fc-ends": ENDS, "fc-keeper": ENDS})
        keeper = container_id(gw.data_dir, instance_ids(gw, "fc-keeper")[0])

        for event, status, error_type in (
            (b"crash", 502, "Unhandled"),
            (b"hang", 504, "Timeout"),
            (b"hog", 502, "OutOfMemory"),
        ):
            cid = _warm_container(gw, "fc-ends")
            response = gw.invoke("fc-ends", event)
            assert (response.status_code, response.headers.get("X-Edgefc-Error-Type")) == (
                status,
                error_type,
            ), response.text
            wait_clean(gw, [cid])

        # A stop the gateway asks for (restart of the function) and a crash of a continuous instance.
        cid = _warm_container(gw, "fc-ends")
        assert gw.client is not None and gw.client.post("/v1/functions/fc-ends/restart").status_code in (
            200,
            202,
            204,
        )
        wait_clean(gw, [cid])
        assert gw.invoke("fc-keeper", b"crash").status_code == 502
        gw.wait_for(
            lambda: instance_ids(gw, "fc-keeper") and gw.status("fc-keeper")["state"] == "running",
            what="keep-alive",
        )
        wait_clean(gw, [keeper])
        assert gw.status("fc-keeper")["last_exit"]["reason"] in ("exited", "crash")
        assert len(runc_ids(gw.data_dir)) == 1  # the keeper's new container, nothing else
    finally:
        gw.stop()
    assert not host_leftovers(gw.data_dir), host_leftovers(gw.data_dir)


def test_sigkilled_gateway_restarted_leaves_exactly_the_five_new_containers(tmp_path: Path) -> None:
    require_containers()
    ports = {f"fc-k{i}": free_port() for i in range(5)}
    manifest = {"functions": [
        fn(name, mode="continuous", initializer="index.init", config={"port": 80}, container={"ports": [f"{port}:80/tcp"]})
        for name, port in ports.items()
    ]}  # fmt: skip
    data = tmp_path / "data"
    gw = GatewayProcess(data, isolation="container").start()
    try:
        gw.deploy(manifest, dict.fromkeys(ports, SERVER))
        old = runc_ids(data)
        assert len(old) == 5
        for name, port in ports.items():
            assert http_get(port) == f"hello from {name}"
        # The detector sees every kind of thing a running container holds (else "nothing left" proves nothing).
        held = {entry.split()[0] for entry in leftovers(data, old)}
        assert held == {"container", "cgroup", "netns", "veth", "lease", "rule", "bundle", "process"}, held
        gw.sigkill()
        # runc run --keep leaves the containers in runc's list, running or stopped: there is something to reconcile.
        assert set(old) <= set(runc_ids(data))
    finally:
        gw.stop()

    t0 = time.monotonic()
    again = GatewayProcess(data, isolation="container").start()
    try:
        for name in ports:
            again.wait_for(lambda n=name: again.status(n)["state"] == "running", what=f"{name} restored")
        restored_s = time.monotonic() - t0
        new = runc_ids(data)
        assert len(new) == 5 and not set(new) & set(old), (old, new)
        assert sorted(container_id(data, i) for name in ports for i in instance_ids(again, name)) == new
        assert not leftovers(data, old), leftovers(data, old)
        for name, port in ports.items():  # no stale DNAT rule of the dead run shadows the new mappings
            assert http_get(port) == f"hello from {name}"
        assert restored_s < 30
    finally:
        again.stop()
    assert not host_leftovers(data), host_leftovers(data)


def test_restart_with_process_isolation_still_removes_the_dead_runs_containers(tmp_path: Path) -> None:
    require_containers()
    data = tmp_path / "data"
    port = free_port()
    gw = GatewayProcess(data, isolation="container").start()
    try:
        gw.deploy({"functions": [fn("fc-web", mode="continuous", initializer="index.init", config={"port": 80},
                                    container={"ports": [f"{port}:80/tcp"]})]}, {"fc-web": SERVER})  # fmt: skip
        old = runc_ids(data)
        gw.sigkill()
    finally:
        gw.stop()
    # A process gateway on the same data dir still removes what the container run left (and holds none).
    plain = GatewayProcess(data, isolation="process").start()
    try:
        left = leftovers(data, old)
        assert plain.client is not None and plain.client.get("/v1/functions").json() == []
    finally:
        plain.stop()
        if left:  # the host is cleaned either way: a container gateway on the data dir reconciles
            GatewayProcess(data, isolation="container").start().stop()
    assert not left, left
    assert not host_leftovers(data), host_leftovers(data)
    assert refused(port)
