"""Deployment versions through a real gateway: a version name means one content, a deploy that changes nothing is
not a new version, figures count the running version, an interrupted deploy does not stay ``applying``."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.gateway_harness import GatewayProcess, fn

ECHO = "TAG = {tag!r}\n\ndef handler(event, context):\n    return TAG\n"


def files(manifest: dict[str, Any], sources: dict[str, str]) -> list[tuple[str, Any]]:
    """The multipart parts of a deployment, built once so that many threads can send the same bytes."""
    parts: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", yaml.safe_dump(manifest).encode(), "application/yaml"))]
    for name, source in sources.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("index.py", source)
        parts.append((name, (f"{name}.zip", buffer.getvalue(), "application/zip")))
    return parts


def info(gw: GatewayProcess) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get("/v1/deployment").json()  # type: ignore[no-any-return]


def test_same_version_name_with_other_content_is_refused(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "v1", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="one")})
    refused = gateway.deploy({"version": "v1", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="two")}, expect=409)
    error = refused.json()["error"]
    assert error["type"] == "Conflict"
    assert error["message"].startswith("version: 'v1' was already deployed with different content")
    assert gateway.invoke("echo").text == "one"  # nothing changed
    # The same content under the same name is fine (and changes nothing), a new name is a new version.
    again = gateway.deploy({"version": "v1", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="one")})
    assert again.json()["unchanged"] == ["echo"]
    gateway.deploy({"version": "v2", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="two")})
    assert gateway.invoke("echo").text == "two"


def test_identical_concurrent_deploys_do_not_make_rollback_skip_a_version(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "a", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="a")})
    parts = files({"version": "b", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="b")})
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.token}"}, timeout=120) as c:
            statuses.append(c.put("/v1/deployment", files=parts).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * 20
    assert info(gateway)["previous_version"] == "a"
    assert gateway.cli("rollback").returncode == 0
    assert info(gateway)["version"] == "a"
    assert gateway.invoke("echo").text == "a"


def test_figures_start_from_zero_with_a_new_version(gateway: GatewayProcess) -> None:
    gateway.deploy({"version": "1", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="one")})
    for _ in range(3):
        assert gateway.invoke("echo").status_code == 200
    before = gateway.status("echo")
    assert before["invocations"] == 3
    assert before["duration_ms"]["p50"] is not None
    gateway.deploy({"version": "2", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="two")})
    after = gateway.status("echo")
    assert (after["version"], after["invocations"], after["errors"]) == ("2", 0, 0)
    assert after["duration_ms"]["p50"] is None
    assert after["perf"]["invocations"] == 0


def test_an_interrupted_deploy_does_not_stay_applying(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data").start()
    try:
        gw.deploy({"version": "good", "functions": [fn("echo")]}, {"echo": ECHO.format(tag="good")})
        slow = "import time\ntime.sleep(60)  # the import never ends while the test looks\n" + ECHO.format(tag="slow")
        parts = files({"version": "slow", "functions": [fn("echo")]}, {"echo": slow})

        def send() -> None:
            with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, timeout=5) as c:
                try:
                    c.put("/v1/deployment", files=parts)
                except httpx.HTTPError:
                    pass  # the gateway is killed under it

        sender = threading.Thread(target=send)
        sender.start()
        gw.wait_for(lambda: info(gw)["status"] == "applying", what="the deploy to be applying")
        gw.sigkill()
        sender.join(timeout=30)
        gw.start()
        shown = info(gw)
        assert shown["version"] == "good"
        assert shown["status"] == "failed"
        assert "interrupted" in shown["message"]
        assert gw.invoke("echo").text == "good"
    finally:
        gw.stop()
