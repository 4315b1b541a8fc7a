"""Code written for Alibaba Link IoT Edge (lethingaccesssdk drivers, lecoresdk applications) on a real gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.gateway_harness import GatewayProcess, fn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices" / "functions"
RECORDER = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(event.decode() + "\\n")
"""

def devices_by_name(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    assert gw.client is not None
    return {f"/{d['product_key']}/{d['device_name']}": d for d in gw.client.get("/v1/devices").json()}


def test_light_sensor_driver_and_light_monitor_app_run_unmodified(gateway: GatewayProcess, tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    manifest = {
        "functions": [
            fn("light-sensor", mode="continuous", memory_mb=64, config={"period_s": 0.1}),
            fn("light-monitor", memory_mb=64, timeout_s=10),
            fn("recorder", memory_mb=64, env={"OUT": str(alerts)}),
        ],
        "routes": [
            {"name": "light", "source": "device:/lightpk/+", "topic": "/sys/+/+/thing/event/property/post",
             "target": "function:light-monitor"},
            {"name": "alerts", "source": "function:light-monitor", "topic": "/alerts/#", "target": "function:recorder"},
        ],
        "devices": [
            {"product_key": "lightpk", "device_name": "light-1", "driver": "light-sensor", "tags": {"room": "hall"}},
            {"product_key": "lamppk", "device_name": "lamp-1", "driver": "light-sensor", "config": {"kind": "lamp"},
             "tags": {"room": "hall", "kind": "lamp"}},
        ],
    }  # fmt: skip
    sources = {
        "light-sensor": {"index.py": (EXAMPLES / "light-sensor" / "index.py").read_text()},
        "light-monitor": {"index.py": (EXAMPLES / "light-monitor" / "index.py").read_text()},
        "recorder": RECORDER,
    }  # fmt: skip
    gateway.deploy(manifest, sources)
    assert gateway.client is not None
    # Registered at import time (module level, as Link IoT Edge drivers do); the sensor reports; when it gets
    # dark the monitor finds the lamp by its tag and switches it on through the lamp's setProperties.
    assert all(d["online"] for d in devices_by_name(gateway).values())
    lamp = gateway.wait_for(lambda: (d := devices_by_name(gateway)["/lamppk/lamp-1"])["properties"]["LightSwitch"]["value"] == 1 and d,
                            timeout=15, what="the lamp switched on")  # fmt: skip
    assert lamp["online"]
    alert = gateway.wait_for(lambda: alerts.exists() and json.loads(alerts.read_text().splitlines()[0]), timeout=5, what="an alert")
    assert alert["topic"] == "/alerts/light" and alert["source"] == {"type": "function", "id": "light-monitor"}
    assert json.loads(alert["payload"]) == {"sensor": "/lightpk/light-1", "illuminance": 100}

    # The sensor refuses a set with the published sample's code 100001, which Link IoT Edge's SDK hands the
    # caller as 100000 ("exec failed"); a read goes through its getProperties.
    refused = gateway.client.post("/v1/devices/lightpk/light-1/properties", json={"MeasuredIlluminance": 5})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == 100000
    value = gateway.client.get("/v1/devices/lightpk/light-1/properties?keys=MeasuredIlluminance").json()
    assert set(value) == {"MeasuredIlluminance"} and 100 <= value["MeasuredIlluminance"] <= 600


def test_a_real_package_of_that_name_wins_over_the_shim(gateway: GatewayProcess) -> None:
    own = {
        "index.py": "import lecoresdk, lethingaccesssdk\n"
                    "def handler(event, context):\n"
                    "    return {'lecoresdk': lecoresdk.WHO, 'lethingaccesssdk': lethingaccesssdk.__file__}\n",
        "lecoresdk.py": "WHO = 'the function ships its own'\n",
    }  # fmt: skip
    gateway.deploy({"functions": [fn("own")]}, {"own": own})
    answer = gateway.invoke("own").json()
    assert answer["lecoresdk"] == "the function ships its own"
    assert answer["lethingaccesssdk"].endswith("/edgefc/compat/lethingaccesssdk/__init__.py")
