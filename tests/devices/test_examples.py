"""The example deployments deploy as `make run` and the README use them, with their devices coming online."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.gateway_harness import GatewayProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("manifest", ["quickstart/deployment.yaml", "devices/deployment.yaml"])
def test_example_deploys_and_its_devices_come_online(gateway: GatewayProcess, manifest: str) -> None:
    deployed = gateway.cli("deploy", str(EXAMPLES / manifest), timeout=120)
    assert deployed.returncode == 0, deployed.stderr.decode()
    assert gateway.client is not None
    found = gateway.client.get("/v1/devices").json()
    assert found and all(d["online"] for d in found), found
    gateway.wait_for(lambda: all(d["properties"] for d in gateway.client.get("/v1/devices").json()) if gateway.client else False,
                     timeout=10, what="a report from every device")  # fmt: skip
    if manifest.startswith("quickstart"):
        assert gateway.invoke("hello", b'{"name": "edge"}').json()["hello"] == "edge"
