"""Messaging through a real gateway with its managed Mosquitto and a second Mosquitto as the cloud:
routes from MQTT to functions to MQTT and the cloud, the SDK's publish and invoke, the messages API,
timers, and bad routing input."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.e2e.mqtt_peer import Device, Mosquitto, Subscriber, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.needs_mosquitto]

# Writes what it saw (event and trigger) as one JSON line to $SEEN; then does what the event's payload asks.
RECORDER = """
import json, os
import edgefc.sdk as fc

def handler(event, context):
    trigger = context.trigger
    seen = {"event": event.decode("utf-8", "replace"), "trigger": [trigger.type, trigger.topic, trigger.source],
            "function": context.function.name}
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.dumps(seen) + "\\n")
    return "ok"
"""

ALARM = """
import json, os
import edgefc.sdk as fc

def handler(event, context):
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.dumps({"event": json.loads(event), "trigger": [context.trigger.type, context.trigger.topic,
                            context.trigger.source]}) + "\\n")
    reading = json.loads(json.loads(event)["payload"])
    temp = reading["temp"]["value"]
    if temp > 30:
        fc.publish("alerts/temp", json.dumps({"alert": "hot", "temp": temp}), qos=1)
    return "ok"
"""


class Seen:
    """The JSON lines functions appended to one file (process isolation writes straight to the test's tmp)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[dict[str, Any]]:
        text = self.path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if len(lines) >= n:
                return lines
            time.sleep(0.02)
        raise AssertionError(f"expected {n} lines in {self.path.name}, got {self.lines()!r}")


class Rig:
    """One gateway with a managed broker on ``mqtt_port`` and a cloud broker, shared by this module's tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = Mosquitto(root / "cloud").start()
        self.mqtt_port = free_port()
        config = {
            "mqtt": {"broker": "managed", "listen": f"127.0.0.1:{self.mqtt_port}"},
            "cloud": {"mqtt_url": self.cloud.url, "topic_prefix": "edge/gw1"},
        }
        self.gw = GatewayProcess(root / "data", config=config).start()
        self._n = 0

    def seen(self) -> Seen:
        self._n += 1
        return Seen(self.root / f"seen-{self._n}.jsonl")

    def wait_subscribed(self) -> None:
        """Wait until the gateway's router holds its subscriptions (the stats say connected)."""
        self.gw.wait_for(lambda: self.stats()["connected"] and self.stats()["cloud_connected"], what="mqtt links")

    def stats(self) -> dict[str, Any]:
        assert self.gw.client is not None
        return self.gw.client.get("/v1/stats").json()["mqtt"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.gw.stop()
        self.cloud.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("messaging"))
    try:
        yield rig
    finally:
        rig.close()


def test_device_to_function_to_mqtt_and_cloud(rig: Rig) -> None:
    seen = rig.seen()
    manifest = {
        "functions": [fn("alarm", env={"SEEN": str(seen.path)})],
        "routes": [
            {"name": "readings", "source": "mqtt", "topic": "/sys/+/+/thing/event/property/post",
             "target": "function:alarm", "qos": 1},
            {"name": "siren", "source": "function:alarm", "topic": "alerts/#", "target": "mqtt:siren/on", "qos": 1},
            {"name": "uplink", "source": "function:alarm", "topic": "alerts/#", "target": "cloud", "qos": 1},
        ],
    }  # fmt: skip
    rig.gw.deploy(manifest, {"alarm": ALARM})
    rig.wait_subscribed()
    siren = Subscriber(rig.mqtt_port, "siren/#")
    upstream = Subscriber(rig.cloud.port, "#")
    try:
        reading = json.dumps({"temp": {"value": 42.5, "time": 1700000000000}})
        topic = "/sys/pk1/sensor-1/thing/event/property/post"
        subprocess.run(
            ["mosquitto_pub", "-p", str(rig.mqtt_port), "-q", "1", "-V", "5", "-i", "sensor-1",
             "-D", "publish", "user-property", "client_id", "sensor-1", "-t", topic, "-m", reading],
            check=True, timeout=10,
        )  # fmt: skip
        assert siren.wait_count(1) == [json.dumps({"alert": "hot", "temp": 42.5}).encode()]
        assert upstream.wait_count(1) == [json.dumps({"alert": "hot", "temp": 42.5}).encode()]
        assert upstream.received()[0][0] == "edge/gw1/alerts/temp"
        (line,) = seen.wait(1)
        assert line["event"] == {"topic": topic, "payload": reading, "source": {"type": "mqtt", "id": "sensor-1"}}
        assert line["trigger"][:2] == ["message", topic]
    finally:
        siren.close()
        upstream.close()
