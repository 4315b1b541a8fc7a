"""Every bad input of issue 11 gets a clear error naming what is wrong, and changes nothing."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloud.harness import CloudProcess, code_zip, wait_for

pytestmark = [pytest.mark.timeout(90)]

HELLO = {"index.py": "def handler(event, context):\n    return b'hi'\n"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    process = CloudProcess(tmp_path_factory.mktemp("bad") / "cloud").start()
    process.function("hello", HELLO)
    yield process
    assert process.stop() == 0


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    return f"{error['message']} {error.get('details') or ''}"


def test_unknown_names_are_404_naming_them(shared: CloudProcess) -> None:
    c = shared.client
    assert c is not None
    assert "'nope'" in _error(c.get("/v1/functions/nope"), 404)
    assert "no version 9" in _error(c.get("/v1/functions/hello/versions/9"), 404)
    assert "'gw-missing'" in _error(c.post("/v1/instances/gw-missing/deployments"), 404)
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "x"})
    assert "'nope'" in _error(c.put(f"/v1/instances/{inst['id']}/assignments/nope", json={"version": 1}), 404)
    assert "no version 7" in _error(c.put(f"/v1/instances/{inst['id']}/assignments/hello", json={"version": 7}), 404)
    assert "without" not in _error(httpx.get(f"{shared.url}/v1/functions"), 401)


def test_bundles_get_the_gateways_checks(shared: CloudProcess) -> None:
    c = shared.client
    assert c is not None
    before = shared.api("GET", "/v1/functions/hello/versions", 200)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", HELLO["index.py"])
        archive.writestr("../../etc/cron.d/evil", "x")
    assert "climbs out of the bundle" in _error(c.post("/v1/functions/hello/versions", content=buffer.getvalue()), 422)
    assert "not a valid zip" in _error(c.post("/v1/functions/hello/versions", content=b"PK no zip"), 422)
    link = io.BytesIO()
    with zipfile.ZipFile(link, "w") as archive:
        archive.writestr("index.py", HELLO["index.py"])
        entry = zipfile.ZipInfo("secrets")
        entry.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(entry, "/etc/shadow")
    assert "symbolic link" in _error(c.post("/v1/functions/hello/versions", content=link.getvalue()), 422)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.py", HELLO["index.py"])
        archive.writestr("zeros.bin", b"\0" * (60 << 20))  # 60 MiB that packs into about 60 KiB
    assert len(bomb.getvalue()) < 1 << 20
    assert "unpacks to" in _error(c.post("/v1/functions/hello/versions", content=bomb.getvalue()), 422)
    missing = code_zip({"main.py": "def handler(e, c):\n    return 1\n"})
    assert "index.py" in _error(c.post("/v1/functions/hello/versions", content=missing), 422)
    huge = b"\0" * (51 << 20)
    assert "exceeds the cap" in _error(c.post("/v1/functions/hello/versions", content=huge), 413)
    assert shared.api("GET", "/v1/functions/hello/versions", 200) == before


def test_invalid_settings_name_the_field_and_change_nothing(shared: CloudProcess) -> None:
    c = shared.client
    assert c is not None
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "settings"})
    path = f"/v1/instances/{inst['id']}/assignments/hello"
    shared.api("PUT", path, 200, json={"version": 1, "memory_mb": 128})
    env = {f"K{i}": "v" for i in range(11)}
    text = _error(c.put(path, json={"version": 1, "memory_mb": 99999, "env": env}), 422)
    assert "memory_mb: must be between 16 and 16384, got 99999" in text
    assert "env: at most 10 variables, got 11" in text
    assert "handler: set on the function" in _error(c.put(path, json={"version": 1, "handler": "x.y"}), 422)
    assert "idle_timeout_s" in _error(c.put(path, json={"version": 1, "mode": "continuous", "idle_timeout_s": 5}), 422)
    text = _error(c.put(f"/v1/instances/{inst['id']}/routes",
                        json=[{"name": "r", "source": "mqtt", "topic": "#", "target": "function:ghost"}]), 422)  # fmt: skip
    assert "routes[0].target" in text and "ghost" in text
    text = _error(c.put(f"/v1/instances/{inst['id']}/devices",
                        json=[{"product_key": "pk", "device_name": "d1", "driver": "hello"}]), 422)  # fmt: skip
    assert "devices[0].driver" in text and "continuous" in text
    assert "runtime" in _error(c.post("/v1/functions", json={"name": "f2", "handler": "a.b", "runtime": "cobol"}), 422)
    got = shared.api("GET", f"/v1/instances/{inst['id']}", 200)
    assert got["assignments"] == [{"function": "hello", "version": 1, "memory_mb": 128}]
    assert got["routes"] == [] and got["devices"] == []


def test_a_version_in_use_cannot_be_deleted(shared: CloudProcess) -> None:
    c = shared.client
    assert c is not None
    number = shared.function("hello", {"index.py": "def handler(e, c):\n    return b'v'\n"})
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "inuse"})
    shared.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": number})
    text = _error(c.delete(f"/v1/functions/hello/versions/{number}"), 409)
    assert f"version {number} of 'hello' is still in use" in text and inst["id"] in text
    assert "still in use" in _error(c.delete("/v1/functions/hello"), 409)
    shared.api("GET", f"/v1/functions/hello/versions/{number}", 200)
    shared.api("DELETE", f"/v1/instances/{inst['id']}/assignments/hello", 204)
    shared.api("DELETE", f"/v1/functions/hello/versions/{number}", 204)
    shared.api("GET", f"/v1/functions/hello/versions/{number}", 404)


def _agent(shared: CloudProcess, instance: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=shared.url, timeout=10,
                        headers={"Authorization": f"Bearer {token}", "X-Edgefc-Instance": instance})  # fmt: skip


def test_a_rotated_token_is_401_and_a_skewed_clock_changes_no_cloud_time(shared: CloudProcess) -> None:
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "rotate"})
    with _agent(shared, inst["id"], inst["token"]) as old:
        assert old.get("/v1/agent/desired", params={"wait": 0}).status_code == 200
        new = shared.api("POST", f"/v1/instances/{inst['id']}/token", 200)["token"]
        assert "wrong or was rotated" in _error(old.get("/v1/agent/desired", params={"wait": 0}), 401)
    with _agent(shared, inst["id"], new) as agent:
        hours_ahead = time.time() + 3 * 3600
        status = {"functions": [], "host": {"cpu_percent": 1.0}}
        assert agent.post("/v1/agent/report", json={"time": hours_ahead, "status": status}).status_code == 200
    got = shared.api("GET", f"/v1/instances/{inst['id']}/status", 200)
    assert got["clock_skew_s"] == pytest.approx(3 * 3600, abs=60)
    reported = got["reported_at"]
    assert reported.startswith(time.strftime("%Y-%m-%dT%H", time.gmtime())) or reported[:13] == time.strftime(
        "%Y-%m-%dT%H", time.gmtime(time.time() - 60))  # the cloud's own clock, not the gateway's


def test_two_deploys_at_once_one_wins_and_the_other_is_told(shared: CloudProcess) -> None:
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "race"})
    shared.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
    with _agent(shared, inst["id"], inst["token"]) as agent:  # online: its gateway polls
        agent.get("/v1/agent/desired", params={"wait": 0})
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def deploy() -> None:
            with httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {shared.token}"}) as c:
                barrier.wait()
                codes.append(c.post(f"/v1/instances/{inst['id']}/deployments").status_code)

        threads = [threading.Thread(target=deploy) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sorted(codes) == [201, 409]
    listed = shared.api("GET", f"/v1/instances/{inst['id']}/deployments", 200)
    assert [d["number"] for d in listed] == [1]


def test_a_pending_deployment_of_an_offline_gateway_is_superseded(shared: CloudProcess) -> None:
    inst = shared.api("POST", "/v1/instances", 201, json={"name": "away"})
    shared.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
    shared.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    shared.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
    first = shared.deployment(inst["id"], 1)
    assert first["status"] == "failed" and "superseded by deployment 2" in first["message"]
    text = _error(shared.client.get(f"/v1/instances/{inst['id']}/logs", params={"function": "hello"}), 504)  # type: ignore[union-attr]
    assert "offline" in text


def test_an_artifact_that_does_not_match_its_hash_is_refused_and_retried(tmp_path: Path, make_gateway: Any) -> None:
    cloud = CloudProcess(tmp_path / "cloud").start()
    try:
        inst = cloud.api("POST", "/v1/instances", 201, json={"name": "hash"})
        gw = make_gateway(cloud.url, inst["id"], inst["token"])
        cloud.function("hello", HELLO)
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        assert cloud.wait_final(inst["id"], 1)["status"] == "succeeded"
        number = cloud.function("hello", {"index.py": "def handler(e, c):\n    return b'new'\n"})
        sha = cloud.api("GET", f"/v1/functions/hello/versions/{number}", 200)["sha256"]
        with contextlib.closing(sqlite3.connect(tmp_path / "cloud" / "cloud.db")) as db, db:  # a disk fault's work
            db.execute("UPDATE artifacts SET data = ? WHERE sha256 = ?", (code_zip({"index.py": "evil = 1\n"}), sha))
        cloud.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": number})
        cloud.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        done = cloud.wait_final(inst["id"], 2)
        assert done["status"] == "failed" and "sha256" in done["message"]
        retries = [s["message"] for s in done["stages"] if "does not match its sha256" in s["message"]]
        assert len(retries) == 3 and "attempt 3 of 3" in retries[-1]
        assert gw.invoke("hello").content == b"hi"
        assert "does not match its sha256" in gw.log_text()

        # A rotated token: the gateway says so in its log and keeps running what it has.
        cloud.api("POST", f"/v1/instances/{inst['id']}/token", 200)
        wait_for(lambda: "rejected this gateway's credentials" in gw.log_text(), what="the gateway's log line")
        assert "wrong or was rotated" in gw.log_text()
        assert gw.client is not None
        assert gw.client.get("/v1/stats").json()["cloud"]["state"] == "unauthorized"  # and in its status
        assert gw.invoke("hello").content == b"hi"
    finally:
        cloud.stop()
