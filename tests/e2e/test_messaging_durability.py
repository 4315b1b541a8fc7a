"""No QoS 1 message is lost: a cloud outage, a SIGKILLed gateway, a target that always fails (dead letters)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.e2e.mqtt_peer import Device, Mosquitto, Subscriber, free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.needs_mosquitto]

# Appends the message payload (a message id) as one line to $SEEN, after $DELAY seconds of "work".
WORKER = """
import json, os, time

def handler(event, context):
    time.sleep(float(os.environ.get("DELAY", "0")))
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.loads(event)["payload"] + "\\n")
    return "ok"
"""

BROKEN = """
def handler(event, context):
    raise RuntimeError("sensor table missing")
"""


class Burst:
    """A device publishing QoS 1 messages as fast as its in-flight window allows, from a thread, until stopped;
    ``acked()`` is what the broker confirmed. paho numbers the messages 1, 2, … so mid n carries d{n-1}."""

    def __init__(self, port: int, topic: str) -> None:
        self.device = Device(port, "burst-device")
        self.topic = topic
        self._acked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="burst", daemon=True)
        self.device.client.on_publish = lambda c, u, mid, reason, props: self._acked.append(f"d{mid - 1:05d}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        for i in range(30000):
            if self._stop.is_set():
                return
            info = self.device.client.publish(self.topic, f"d{i:05d}", 1)
            assert info.mid == i + 1
            if i % 20 == 19:
                self._stop.wait(0.001)  # let the in-flight window drain instead of queueing 30 000 in paho

    def acked(self) -> list[str]:
        return list(self._acked)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.device is not None:
            self.device.close()
            self.device = None  # type: ignore[assignment]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def post(gw: GatewayProcess, topic: str, payload: str, qos: int = 1) -> None:
    assert gw.client is not None
    response = gw.client.post("/v1/messages", json={"topic": topic, "payload": payload, "qos": qos})
    assert response.status_code == 202, response.text


def mqtt_stats(gw: GatewayProcess) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get("/v1/stats").json()["mqtt"]  # type: ignore[no-any-return]


def queue_depth(gw: GatewayProcess, target: str) -> int:
    assert gw.client is not None
    rows = gw.client.get("/v1/queues").json()["targets"]
    return next((row["durable_depth"] for row in rows if row["target"] == target), 0)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "cloud").start()
    try:
        yield broker
    finally:
        broker.stop()


def test_cloud_outage_loses_nothing_and_keeps_order(tmp_path: Path, cloud: Mosquitto) -> None:
    mqtt_port = free_port()
    config = {
        "mqtt": {"broker": "managed", "listen": f"127.0.0.1:{mqtt_port}"},
        "cloud": {"mqtt_url": cloud.url},
    }
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    upstream = Subscriber(cloud.port, "telemetry/#", persistent=True)
    device: Device | None = None
    try:
        routes = [
            {"name": "api-up", "source": "api", "topic": "telemetry/#", "target": "cloud", "qos": 1},
            {"name": "dev-up", "source": "mqtt", "topic": "telemetry/#", "target": "cloud", "qos": 1},
        ]
        gw.deploy({"routes": routes}, {})
        gw.wait_for(lambda: mqtt_stats(gw)["cloud_connected"] and mqtt_stats(gw)["connected"], what="links")
        post(gw, "telemetry/api", "before")
        upstream.wait_count(1)

        cloud.stop()
        gw.wait_for(lambda: not mqtt_stats(gw)["cloud_connected"], what="the gateway to see the cloud gone")
        device = Device(mqtt_port)
        sent = []
        for i in range(30):
            post(gw, "telemetry/api", f"api-{i}")
            sent.append(f"api-{i}")
        for i in range(20):
            device.publish("telemetry/dev", f"dev-{i}", qos=1)
        gw.wait_for(lambda: queue_depth(gw, "cloud") == 50, what="50 messages queued for the cloud")

        cloud.start()
        got = upstream.wait_count(51, timeout=30)
        delivered = [p.decode() for p in got]
        assert delivered[0] == "before"
        assert sorted(set(delivered)) == sorted({"before", *sent, *(f"dev-{i}" for i in range(20))})
        # One source to one target keeps its order (duplicates of at-least-once aside).
        api = [p for p in dict.fromkeys(delivered) if p.startswith("api-")]
        dev = [p for p in dict.fromkeys(delivered) if p.startswith("dev-")]
        assert api == sent and dev == [f"dev-{i}" for i in range(20)]
        gw.wait_for(lambda: queue_depth(gw, "cloud") == 0, what="the cloud queue to drain")
        assert gw.client is not None and gw.client.get("/v1/deadletters").json()["deadletters"] == []
    finally:
        if device is not None:
            device.close()
        upstream.close()
        gw.stop()


def test_full_durable_queue_refuses_new_qos1_and_keeps_what_it_accepted(tmp_path: Path) -> None:
    """The cloud is unreachable from the start; the 1 MiB durable queue fills; the publisher gets 503
    QueueFull (CLI: exit 1); once the cloud comes up everything accepted goes out, in order."""
    cloud = Mosquitto(tmp_path / "cloud")  # not started yet: its port is closed
    config = {"cloud": {"mqtt_url": cloud.url}, "queues": {"max_bytes": 1024 * 1024}}
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    upstream: Subscriber | None = None
    try:
        routes = [{"name": "up", "source": "api", "topic": "bulk/#", "target": "cloud", "qos": 1}]
        gw.deploy({"routes": routes}, {})
        assert gw.client is not None
        accepted = []
        for i in range(10):
            payload = f"{i:02d}" + "x" * 200 * 1024
            response = gw.client.post("/v1/messages", json={"topic": "bulk/a", "payload": payload, "qos": 1})
            if response.status_code != 202:
                break
            accepted.append(payload)
        assert len(accepted) == 5
        assert response.status_code == 503 and response.json()["error"]["type"] == "QueueFull"
        cli = gw.cli("publish", "bulk/b", "-", "--qos", "1", input=b"y" * 100 * 1024)
        assert cli.returncode == 1 and b"QueueFull" in cli.stderr
        assert queue_depth(gw, "cloud") == 5

        cloud.start()
        upstream = Subscriber(cloud.port, "bulk/#")
        got = upstream.wait_count(5, timeout=30, topic="bulk/a")
        assert [p.decode() for p in dict.fromkeys(got)] == accepted
        gw.wait_for(lambda: queue_depth(gw, "cloud") == 0, what="the queue to drain")
        post(gw, "bulk/a", "room again")
    finally:
        if upstream is not None:
            upstream.close()
        gw.stop()
        cloud.stop()


def test_sigkill_with_messages_in_flight_then_restart_delivers_all(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    mqtt_port = free_port()
    config = {"mqtt": {"broker": "managed", "listen": f"127.0.0.1:{mqtt_port}"}}
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        manifest = {
            "functions": [fn("slow", env={"SEEN": str(seen), "DELAY": "0.1"}, max_queue=100)],
            "routes": [
                {"name": "work", "source": "any", "topic": "work/#", "target": "function:slow", "qos": 1}
            ],
        }
        gw.deploy(manifest, {"slow": WORKER})
        gw.wait_for(lambda: mqtt_stats(gw)["connected"], what="the local link")
        ids = [f"m{i:03d}" for i in range(20)]
        for message_id in ids[:10]:
            post(gw, "work/api", message_id)
        device = Device(mqtt_port)
        try:
            for message_id in ids[10:]:
                device.publish("work/dev", message_id, qos=1)
        finally:
            device.close()
        gw.wait_for(lambda: len(lines(seen)) >= 3, what="the first deliveries")
        broker = [p for p in psutil.Process(gw.pid).children(recursive=True) if p.name() == "mosquitto"]
        assert len(broker) == 1
        gw.sigkill()
        assert len(lines(seen)) < len(ids), (
            "everything was delivered before the kill: the test proves nothing"
        )
        psutil.wait_procs(broker, timeout=5)  # the managed broker dies with its gateway
        assert not broker[0].is_running()
        wait_port(mqtt_port, open=False)

        gw.start()
        gw.wait_for(lambda: set(lines(seen)) >= set(ids), timeout=20, what="every message after the restart")
        gw.wait_for(lambda: queue_depth(gw, "function:slow") == 0, what="the queue to drain")
        assert set(lines(seen)) == set(ids)
        assert gw.client is not None
        (lane,) = [row for row in gw.client.get("/v1/queues").json()["targets"] if row["target"] == "function:slow"]
        assert lane["failed"] == 0 and lane["dead_lettered"] == 0  # a restart costs no message a retry
    finally:
        gw.stop()


def test_sigkill_during_a_device_burst_loses_no_message_the_broker_acknowledged(tmp_path: Path) -> None:
    """What a device was told (PUBACK from the managed broker) is delivered after the gateway's restart, even
    when the gateway was killed before taking it from the broker."""
    seen = tmp_path / "seen.txt"
    mqtt_port = free_port()
    gw = GatewayProcess(
        tmp_path / "data", config={"mqtt": {"broker": "managed", "listen": f"127.0.0.1:{mqtt_port}"}}
    )
    gw.start()
    burst = Burst(mqtt_port, "work/dev")
    try:
        manifest = {
            "functions": [fn("sink", env={"SEEN": str(seen)}, max_queue=100)],
            "routes": [
                {"name": "work", "source": "mqtt", "topic": "work/#", "target": "function:sink", "qos": 1}
            ],
        }
        gw.deploy(manifest, {"sink": WORKER})
        gw.wait_for(lambda: mqtt_stats(gw)["connected"], what="the local link")
        burst.start()
        gw.wait_for(lambda: len(burst.acked()) >= 1500, what="1500 PUBACKs to the device")
        gw.sigkill()
        burst.stop()
        acked = set(burst.acked())
        assert len(lines(seen)) < len(acked), (
            "everything was delivered before the kill: the test proves nothing"
        )
        wait_port(mqtt_port, open=False)

        gw.start()
        deadline = time.monotonic() + 30
        while (missing := acked - set(lines(seen))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not missing, (
            f"{len(missing)} of {len(acked)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
        )
    finally:
        burst.stop()
        gw.stop()


def test_always_failing_target_dead_letters_and_replay_after_fix(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    gw = GatewayProcess(tmp_path / "data", config={"queues": {"max_retries": 1}}).start()
    try:
        routes = [{"name": "jobs", "source": "api", "topic": "jobs/#", "target": "function:job", "qos": 1}]
        gw.deploy({"functions": [fn("job")], "routes": routes}, {"job": BROKEN})
        post(gw, "jobs/a", "job-1")
        post(gw, "jobs/b", "job-2")
        assert gw.client is not None

        def letters() -> list[dict[str, Any]]:
            return gw.client.get("/v1/deadletters").json()["deadletters"]  # type: ignore[union-attr, no-any-return]

        gw.wait_for(lambda: len(letters()) == 2, what="two dead letters")
        first, second = letters()
        assert (first["topic"], second["topic"]) == ("jobs/a", "jobs/b")
        assert first["target"] == "function:job" and first["attempts"] == 2
        assert "sensor table missing" in first["error"]
        queues = gw.client.get("/v1/queues").json()
        assert queues["deadletters"] == 2 and queues["depth"] == 0
        listed = gw.cli("deadletters", "list", "--json")
        assert listed.returncode == 0 and len(json.loads(listed.stdout)["deadletters"]) == 2

        gw.deploy({"functions": [fn("job", env={"SEEN": str(seen)})], "routes": routes}, {"job": WORKER})
        replay = gw.client.post(f"/v1/deadletters/{first['id']}/replay")
        assert replay.status_code == 200, replay.text
        gw.wait_for(lambda: lines(seen) == ["job-1"], what="the replayed message")
        done = gw.cli("deadletters", "replay", str(second["id"]))
        assert done.returncode == 0, done.stderr
        gw.wait_for(lambda: lines(seen) == ["job-1", "job-2"], what="the message replayed by the CLI")
        assert letters() == []
        assert gw.client.post(f"/v1/deadletters/{first['id']}/replay").status_code == 404
        assert gw.cli("deadletters", "replay", "999999").returncode == 2
    finally:
        gw.stop()


def test_missed_timer_firings_catch_up_once_after_downtime(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    tick = """
    import json, os
    def handler(event, context):
        with open(os.environ["SEEN"], "a") as f:
            f.write(json.loads(event)["triggerTime"] + "\\n")
    """
    gw = GatewayProcess(tmp_path / "data").start()
    try:
        gw.deploy({"functions": [fn("tick", env={"SEEN": str(seen)}, schedule="@every 10m")]}, {"tick": tick})
        gw.stop()
        # An hour of downtime (six missed slots), told through the timer state instead of waited out.
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        (tmp_path / "data" / "timers.json").write_text(json.dumps({"tick": hour_ago.isoformat()}))
        restarted = datetime.now(UTC)
        gw.start()
        gw.wait_for(lambda: lines(seen), what="the catch-up firing")
        gw.wait_for(lambda: gw.status("tick")["invocations"] >= 1 and gw.status("tick")["state"] != "running",
                    what="the firing to finish")  # fmt: skip
        (fired,) = lines(seen)
        assert abs(datetime.fromisoformat(fired.replace("Z", "+00:00")) - restarted) < timedelta(seconds=5)
        assert gw.status("tick")["invocations"] == 1
        assert "firing once to catch up" in gw.log_path.read_text()
    finally:
        gw.stop()


def test_a_busy_target_is_waited_for_not_failed(tmp_path: Path) -> None:
    """A function whose queue is full (max_queue) cannot take an event *now*: the message waits, and spends
    none of its retries (here: none to spend)."""
    seen = tmp_path / "seen.txt"
    src = """
    import json, os, time
    def handler(event, context):
        if event == b"hold":
            time.sleep(0.5)
            return "held"
        with open(os.environ["SEEN"], "a") as f:
            f.write(json.loads(event)["payload"] + "\\n")
    """
    gw = GatewayProcess(tmp_path / "data", config={"queues": {"max_retries": 0}}).start()
    try:
        routes = [{"name": "in", "source": "api", "topic": "in/#", "target": "function:one", "qos": 1}]
        gw.deploy({"functions": [fn("one", env={"SEEN": str(seen)}, max_queue=0)], "routes": routes}, {"one": src})
        hold = gw.invoke("one", b"hold", headers={"X-Edgefc-Invocation-Type": "async"})
        assert hold.status_code == 202
        gw.wait_for(lambda: any(i["inflight"] for i in gw.status("one")["instances"]), what="the busy instance")
        post(gw, "in/x", "after the hold")
        gw.wait_for(lambda: lines(seen) == ["after the hold"], what="the delivery once the function is free")
        assert gw.client is not None and gw.client.get("/v1/deadletters").json()["deadletters"] == []
    finally:
        gw.stop()
