"""Messaging through a real gateway with its managed Mosquitto and a second Mosquitto as the cloud:
routes from MQTT to functions to MQTT and the cloud, the SDK's publish and invoke, the messages API,
timers, and bad routing input."""

from __future__ import annotations

import json
import re
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
        self.gw.wait_for(
            lambda: self.stats()["connected"] and self.stats()["cloud_connected"], what="mqtt links"
        )

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
        assert re.fullmatch(r"[0-9a-f]{32}", line["event"].pop("messageId"))
        assert line["event"] == {
            "topic": topic,
            "payload": reading,
            "source": {"type": "mqtt", "id": "sensor-1"},
        }
        assert line["trigger"][:2] == ["message", topic]
        assert rig.gw.client is not None
        metrics = rig.gw.client.get("/metrics").text
        assert 'edgefc_messages_routed_total{route="readings"} 1.0' in metrics
        assert 'edgefc_messages_routed_total{route="uplink"} 1.0' in metrics
    finally:
        siren.close()
        upstream.close()


CALLEE = """
def handler(event, context):
    if event == b"fail":
        raise ValueError("callee refused")
    return b"callee:" + event + b" from " + (context.trigger.source or "").encode()
"""

CALLER = """
import json
import edgefc.sdk as fc

def handler(event, context):
    req = json.loads(event)
    op = req["op"]
    if op == "sync":
        return fc.invoke("callee", req["payload"])
    if op == "async":
        return {"id": fc.invoke("callee", req["payload"], invocation_type="async")}
    try:
        fc.invoke("callee" if op == "error" else "nobody-here", "fail")
    except fc.FunctionError as exc:
        return {"class": f"{type(exc).__module__}.{type(exc).__name__}", "type": exc.type,
                "message": exc.message, "stack": exc.stack}
    return "no error"
"""


def test_function_invokes_function_sync_async_and_error(rig: Rig) -> None:
    rig.gw.deploy({"functions": [fn("caller"), fn("callee")]}, {"caller": CALLER, "callee": CALLEE})
    sync = rig.gw.invoke("caller", json.dumps({"op": "sync", "payload": "ping"}).encode())
    assert sync.status_code == 200 and sync.content == b"callee:ping from function:caller"

    inv_id = rig.gw.invoke("caller", json.dumps({"op": "async", "payload": "later"}).encode()).json()["id"]
    assert rig.gw.client is not None
    found = rig.gw.wait_for(
        lambda: (r := rig.gw.client.get(f"/v1/invocations/{inv_id}").json())["state"] == "succeeded" and r,  # type: ignore[union-attr]
        what="async invocation made by a function",
    )
    import base64

    assert found["function"] == "callee"
    assert base64.b64decode(found["result_base64"]) == b"callee:later from function:caller"

    error = rig.gw.invoke("caller", json.dumps({"op": "error"}).encode()).json()
    assert error["class"] == "edgefc.sdk.FunctionError" and error["type"] == "Handled"
    assert "ValueError: callee refused" in error["message"]
    assert any("callee refused" in line for line in error["stack"])

    missing = rig.gw.invoke("caller", json.dumps({"op": "missing"}).encode()).json()
    assert missing["class"] == "edgefc.sdk.FunctionError" and missing["type"] == "NotFound"


FIRE_AND_FORGET = """
import edgefc.sdk as fc

def handler(event, context):
    fc.publish("qos0/out", b"first", qos=0)
    fc.publish("qos0/#", b"refused", qos=0)  # a wildcard is no topic to publish on: logged, not raised
    fc.publish("qos0/out", b"second", qos=0)
    try:
        fc.publish("qos0/#", b"refused", qos=0, confirm=True)
    except fc.FunctionError as exc:
        return context.request_id + " " + exc.type
    return context.request_id + " not raised"
"""


def test_a_qos0_publish_does_not_wait_and_a_refusal_goes_to_the_function_log(rig: Rig) -> None:
    """``fc.publish(..., qos=0)`` returns before the gateway answers; its messages still go out in order, and a
    refused one is written into the function's log under the event's request id instead of raised. With
    ``confirm=True`` the refusal is raised, as at QoS 1."""
    manifest = {
        "functions": [fn("fire")],
        "routes": [{"name": "fire-out", "source": "function:fire", "topic": "qos0/#", "target": "mqtt:qos0/seen"}],
    }
    rig.gw.deploy(manifest, {"fire": FIRE_AND_FORGET})
    rig.wait_subscribed()
    seen = Subscriber(rig.mqtt_port, "qos0/seen", qos=0)
    try:
        response = rig.gw.invoke("fire", b"go")
        assert response.status_code == 200, response.text
        rid, outcome = response.text.split(" ", 1)
        assert outcome == "ValidationError"
        assert seen.wait_count(2) == [b"first", b"second"]
        assert rig.gw.client is not None

        def refusals() -> list[dict[str, Any]]:
            assert rig.gw.client is not None
            entries = rig.gw.client.get("/v1/functions/fire/logs", params={"request_id": rid, "limit": 100}).json()
            return [e for e in entries["entries"] if "publish refused" in e["message"]]

        (entry,) = rig.gw.wait_for(refusals, what="the refused publish in the function log")
        assert entry["level"] == "error" and entry["request_id"] == rid
        assert "ValidationError" in entry["message"] and "topic" in entry["message"]
    finally:
        seen.close()


def test_fan_out_and_duplicate_routes_deliver_once(rig: Rig) -> None:
    seen = rig.seen()
    env = {"SEEN": str(seen.path)}
    manifest = {
        "functions": [fn("fan-a", env=env), fn("fan-b", env=env), fn("fan-c", env=env)],
        "routes": [
            {"name": "to-a", "source": "api", "topic": "fan/#", "target": "function:fan-a", "qos": 1},
            {"name": "to-b", "source": "api", "topic": "fan/#", "target": "function:fan-b", "qos": 1},
            {"name": "to-c", "source": "any", "topic": "fan/+/x", "target": "function:fan-c"},
            # a second route to fan-a for the same message, and two overlapping MQTT subscriptions (neither
            # covers the other) so the broker sends the gateway two copies of fan/y/x
            {"name": "to-a-again", "source": "api", "topic": "fan/+/x", "target": "function:fan-a"},
            {"name": "mqtt-1", "source": "mqtt", "topic": "fan/+/x", "target": "function:fan-a", "qos": 1},
            {"name": "mqtt-2", "source": "mqtt", "topic": "fan/y/+", "target": "function:fan-a", "qos": 1},
        ],
    }  # fmt: skip
    rig.gw.deploy(manifest, {"fan-a": RECORDER, "fan-b": RECORDER, "fan-c": RECORDER})
    rig.wait_subscribed()
    assert rig.gw.client is not None

    def delivered() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in seen.lines():
            out.setdefault(line["function"], []).append(json.loads(line["event"])["payload"])
        return out

    def ends_with(function: str, marker: str) -> bool:
        return delivered().get(function, [])[-1:] == [marker]

    # Each target has one lane that keeps the order of one source, so once a later marker from the same source
    # is through, a duplicate would have been too.
    for payload, topic in (("one", "fan/y/x"), ("end", "fan/end")):
        response = rig.gw.client.post("/v1/messages", json={"topic": topic, "payload": payload, "qos": 1})
        assert response.status_code == 202
    rig.gw.wait_for(lambda: ends_with("fan-a", "end") and ends_with("fan-b", "end"), what="api marker")
    device = Device(rig.mqtt_port)
    try:
        device.publish("fan/y/x", "two", qos=1)  # both MQTT subscriptions match: the broker sends two copies
        device.publish("fan/z/x", "end2", qos=1)
    finally:
        device.close()
    rig.gw.wait_for(lambda: ends_with("fan-a", "end2") and ends_with("fan-c", "end2"), what="mqtt marker")
    got = delivered()
    assert got["fan-a"] == ["one", "end", "two", "end2"]
    assert got["fan-b"] == ["one", "end"]
    assert got["fan-c"] == ["one", "two", "end2"]  # QoS 0, source `any`: from the API and from MQTT
    assert rig.stats()["router"]["function:fan-a"]["delivered"] == 4


def test_messages_api_and_cli_publish_reach_a_routed_function(rig: Rig) -> None:
    seen = rig.seen()
    manifest = {
        "functions": [fn("sink", env={"SEEN": str(seen.path)})],
        "routes": [
            {"name": "commands", "source": "api", "topic": "cmd/#", "target": "function:sink", "qos": 1}
        ],
    }
    rig.gw.deploy(manifest, {"sink": RECORDER})
    assert rig.gw.client is not None
    response = rig.gw.client.post("/v1/messages", json={"topic": "cmd/light", "payload": "on", "qos": 1})
    assert response.status_code == 202 and len(response.json()["id"]) >= 16
    done = rig.gw.cli("publish", "cmd/fan", "off", "--qos", "1")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) >= 16
    binary = rig.gw.client.post(
        "/v1/messages", json={"topic": "cmd/raw", "payload": "//79", "payloadEncoding": "base64", "qos": 0}
    )
    assert binary.status_code == 202
    unrouted = rig.gw.client.post("/v1/messages", json={"topic": "other/x", "payload": "ignored", "qos": 1})
    assert unrouted.status_code == 202
    lines = seen.wait(3)
    events = {json.loads(line["event"])["topic"]: json.loads(line["event"]) for line in lines}
    assert len({e.pop("messageId") for e in events.values()}) == len(events)  # one id per message
    assert events["cmd/light"] == {
        "topic": "cmd/light",
        "payload": "on",
        "source": {"type": "api", "id": "api"},
    }
    assert events["cmd/fan"]["payload"] == "off" and events["cmd/fan"]["source"]["type"] == "api"
    assert events["cmd/raw"]["payload"] == "//79" and events["cmd/raw"]["payloadEncoding"] == "base64"
    assert {line["trigger"][0] for line in lines} == {"message"}
    assert "other/x" not in events


def _parse_time(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_timer_every_second_starts_an_on_demand_function(rig: Rig) -> None:
    seen = rig.seen()
    manifest = {"functions": [fn("tick", env={"SEEN": str(seen.path)}, schedule="@every 1s",
                                 schedule_payload={"job": "report"})]}  # fmt: skip
    deployed = time.time()
    rig.gw.deploy(manifest, {"tick": RECORDER})
    status = rig.gw.status("tick")
    assert status["mode"] == "on_demand"
    assert status["schedule"]["expression"] == "@every 1s"
    next_fire = _parse_time(status["schedule"]["next_fire"])
    assert time.time() - 0.2 <= next_fire <= time.time() + 1.2

    lines = seen.wait(2, timeout=3.5)
    events = [json.loads(line["event"]) for line in lines]
    assert time.time() - deployed < 3.6
    assert all(line["trigger"][0] == "timer" for line in lines)
    assert all(e["triggerName"] == "tick" and e["payload"] == {"job": "report"} for e in events)
    first, second = (_parse_time(e["triggerTime"]) for e in events[:2])
    assert 0.9 <= second - first <= 1.1
    assert first >= deployed - 0.1
    status = rig.gw.status("tick")
    assert status["cold_starts"] >= 1 and status["invocations"] >= 2
    assert _parse_time(status["schedule"]["next_fire"]) > second


# ---- bad input -------------------------------------------------------------------------------------------------

BAD_ROUTES: list[tuple[dict[str, Any], str]] = [
    ({"name": "r", "source": "mqtt", "topic": "#", "target": "function:ghost"}, "routes[0].target"),
    ({"name": "r", "source": "function:ghost", "topic": "#", "target": "function:echo"}, "routes[0].source"),
    ({"name": "r", "source": "api", "topic": "a/#/b", "target": "function:echo"}, "routes[0].topic"),
    ({"name": "r", "source": "api", "topic": "+x", "target": "function:echo"}, "routes[0].topic"),
    ({"name": "r", "source": "satellite", "topic": "#", "target": "function:echo"}, "routes[0].source"),
    ({"name": "r", "source": "api", "topic": "#", "target": "fax:123"}, "routes[0].target"),
    ({"name": "r", "source": "api", "topic": "#", "target": "function:echo", "qos": 2}, "routes[0].qos"),
    ({"name": "r", "source": "api", "topic": "#", "target": "mqtt:siren/on"}, "routes[0].target"),
    ({"name": "r", "source": "api", "topic": "#", "target": "cloud"}, "routes[0].target"),
    ({"name": "r", "source": "api", "topic": "#", "target": "mqtt:siren/+"}, "routes[0].target"),
]


def test_bad_routing_input_is_rejected_with_its_path_and_nothing_applied(gateway: GatewayProcess) -> None:
    """A gateway with MQTT off and no cloud.mqtt_url (the harness default)."""
    echo = "def handler(event, context):\n    return event\n"
    gateway.deploy({"version": "good", "functions": [fn("echo")]}, {"echo": echo})
    assert gateway.client is not None
    for route, path in BAD_ROUTES:
        response = gateway.deploy({"version": "bad", "functions": [fn("echo")], "routes": [route]}, {"echo": echo},
                                  expect=422)  # fmt: skip
        details = response.json()["error"]["details"]
        assert any(line.startswith(path) for line in details), (route, details)
    for schedule in ("every day at noon", "@every 0s", "61 * * * *"):
        response = gateway.deploy({"version": "bad", "functions": [fn("echo", schedule=schedule)]}, {"echo": echo},
                                  expect=422)  # fmt: skip
        assert any(line.startswith("functions[0].schedule") for line in response.json()["error"]["details"])
    assert gateway.client.get("/v1/deployment").json()["version"] == "good"
    assert gateway.status("echo")["schedule"] is None

    post = gateway.client.post
    assert post("/v1/messages", json={"topic": "a/b", "payload": "x" * (256 * 1024 + 1)}).status_code == 413
    assert post("/v1/messages", json={"topic": "a/b", "payload": "x", "qos": 2}).status_code == 422
    assert post("/v1/messages", json={"topic": "a/+", "payload": "x"}).status_code == 422
    assert (
        post("/v1/messages", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    cli = gateway.cli("publish", "a/#", "x")
    assert cli.returncode == 2, cli.stderr
