"""A real cloud and a real gateway with its agent: deploy stages, rollback, status, live logs, hot deploy."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.harness import CloudProcess, wait_for
from tests.conftest import need_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

V1 = {"index.py": """
    import logging
    def handler(event, context):
        logging.getLogger("hello").warning("served %s", context.request_id)
        return b"v1"
"""}
V2 = {"index.py": "def handler(event, context):\n    return b'v2'\n"}
BROKEN = {"index.py": """
    def init(context):
        raise RuntimeError("database password missing")
    def handler(event, context):
        return b"never"
"""}


def _instance(cloud: CloudProcess, name: str = "line-1") -> dict[str, Any]:
    return cloud.api("POST", "/v1/instances", 201, json={"name": name})  # type: ignore[no-any-return]


def test_deploy_reaches_the_gateway_with_every_stage_and_a_failed_start_rolls_back(cloud: CloudProcess,
                                                                                  make_gateway: Any) -> None:  # fmt: skip
    inst = _instance(cloud)
    gw = make_gateway(cloud.url, inst["id"], inst["token"])
    assert cloud.function("hello", V1) == 1
    cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1, "memory_mb": 64})
    made = cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    assert made["number"] == 1 and made["status"] == "pending"
    done = cloud.wait_final(inst["id"], 1)
    assert done["status"] == "succeeded", done
    assert [s["stage"] for s in done["stages"]] == ["pending", "downloading", "applying", "succeeded"]
    assert gw.invoke("hello").content == b"v1"
    assert gw.client.get("/v1/deployment").json()["version"] == "cloud-1"

    # The status the gateway reports, and a live log query answered by the gateway.
    status = wait_for(lambda: (s := cloud.api("GET", f"/v1/instances/{inst['id']}/status", 200))["functions"] and s,
                      what="a status report")  # fmt: skip
    assert status["online"] and status["reported_at"] and status["functions"][0]["name"] == "hello"
    assert status["host"]["memory_total_bytes"] > 0 and abs(status["clock_skew_s"]) < 5
    assert status["devices"] == [] and status["history"]["time"]  # what the console draws its charts from
    found = wait_for(lambda: cloud.api("GET", f"/v1/instances/{inst['id']}/logs", 200,
                                       params={"function": "hello", "q": "served"})["entries"], what="log lines")  # fmt: skip
    assert "served" in found[0]["message"] and found[0]["level"] == "warning"

    # A continuous function whose initializer raises: the gateway rolls the whole deployment back and stays on
    # deployment 1; the cloud shows rolled_back with the traceback.
    cloud.api("POST", "/v1/functions", 201, json={"name": "starter", "handler": "index.handler", "initializer": "index.init"})
    assert cloud.function("starter", BROKEN) == 1
    cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/starter", 200, json={"version": 1, "mode": "continuous"})
    cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    failed = cloud.wait_final(inst["id"], 2)
    assert failed["status"] == "rolled_back", failed
    assert "database password missing" in failed["traceback"] and "RuntimeError" in failed["traceback"]
    assert gw.invoke("hello").content == b"v1"
    assert gw.client.get("/v1/deployment").json()["version"] == "cloud-1"

    # A new version deployed, then the cloud's rollback to deployment 1 makes deployment 4 with its content.
    cloud.api("DELETE", f"/v1/instances/{inst['id']}/assignments/starter", 204)
    assert cloud.function("hello", V2) == 2
    cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 2})
    cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    assert cloud.wait_final(inst["id"], 3)["status"] == "succeeded"
    assert gw.invoke("hello").content == b"v2"
    back = cloud.api("POST", f"/v1/instances/{inst['id']}/deployments/1/rollback", 201)
    assert back["number"] == 4 and back["rollback_of"] == 1
    assert cloud.wait_final(inst["id"], 4)["status"] == "succeeded"
    assert gw.invoke("hello").content == b"v1"



def test_hot_deploy_of_a_new_version_under_load_loses_no_invocation(cloud: CloudProcess, make_gateway: Any) -> None:
    inst = _instance(cloud, "hot")
    gw = make_gateway(cloud.url, inst["id"], inst["token"], "hot")
    cloud.function("hello", V1)
    cloud.function("hello", V2)
    cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1, "max_instances": 2})
    cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    assert cloud.wait_final(inst["id"], 1)["status"] == "succeeded"

    answers: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def load() -> None:
        import httpx

        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, timeout=10) as client:
            while not stop.is_set():
                response = client.post("/v1/functions/hello/invoke", content=b"x")
                answers.append((response.status_code, response.content))

    worker = threading.Thread(target=load, name="load")
    worker.start()
    try:
        wait_for(lambda: len(answers) > 20, what="load before the deploy")
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 2, "max_instances": 2})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        assert cloud.wait_final(inst["id"], 2)["status"] == "succeeded"
        seen = len(answers)
        wait_for(lambda: len(answers) > seen + 20, what="load after the deploy")
    finally:
        stop.set()
        worker.join(15)
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    bodies = [body for _, body in answers]
    assert bodies[0] == b"v1" and bodies[-1] == b"v2"
    switch = bodies.index(b"v2")
    assert set(bodies[switch:]) == {b"v2"}, "after the first v2 answer no v1 instance serves any more"



def test_a_gateway_trusts_a_private_ca_for_an_https_cloud(tmp_path: Path, make_gateway: Any) -> None:
    openssl = need_binary("openssl")
    cert, key = tmp_path / "cloud.pem", tmp_path / "cloud.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    cloud = CloudProcess(tmp_path / "cloud", tls=(cert, key)).start()
    try:
        assert cloud.url.startswith("https://")
        inst = _instance(cloud, "tls")
        make_gateway(cloud.url, inst["id"], inst["token"], "tls", config={"cloud": {"ca_file": str(cert)}})
        cloud.function("hello", V2)
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        assert cloud.wait_final(inst["id"], 1)["status"] == "succeeded"
    finally:
        cloud.stop()


def test_a_gateway_rides_out_a_cloud_restart(tmp_path: Path, make_gateway: Any) -> None:
    cloud = CloudProcess(tmp_path / "cloud").start()
    try:
        inst = _instance(cloud, "restart")
        gw = make_gateway(cloud.url, inst["id"], inst["token"], "restart")
        cloud.function("hello", V1)
        cloud.function("hello", V2)
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        assert cloud.wait_final(inst["id"], 1)["status"] == "succeeded"

        port = cloud.url.rsplit(":", 1)[1]
        assert cloud.stop() == 0
        wait_for(lambda: "cloud unreachable" in gw.log_text(), what="the gateway noticing the cloud is away")
        assert gw.invoke("hello").content == b"v1"  # it keeps running what it has

        cloud = CloudProcess(tmp_path / "cloud", listen=f"127.0.0.1:{port}").start()  # same database, same port
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 2})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        assert cloud.wait_final(inst["id"], 2)["status"] == "succeeded"
        assert gw.invoke("hello").content == b"v2"
    finally:
        cloud.stop()
