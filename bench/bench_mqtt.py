"""MQTT benchmarks: the Mosquitto + paho baseline, and a round trip helper for device → function → MQTT out.

``republish_roundtrip`` measures what a device sees: it publishes on ``in_topic`` and waits for the message to
come back on ``out_topic``. Against a bare broker with ``in_topic == out_topic`` that is the baseline; against
a gateway with a route ``mqtt in_topic → function → mqtt:out_topic`` it is ``mqtt_to_function_*``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgefc.router.broker import MOSQUITTO, ManagedBroker
from edgefc.router.mqtt import parse_mqtt_url

WINDOW = 256  # messages a benchmark device has on their way at once


def _client(url: str, name: str) -> paho.Client:
    host, port = parse_mqtt_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{uuid.uuid4().hex[:6]}")
    client.max_queued_messages_set(0)
    client.connect(host, port, 30)
    client.loop_start()
    return client


def republish_roundtrip(
    url: str, in_topic: str, out_topic: str, n: int, *, latency_samples: int = 1000, timeout: float = 60.0,
    window: int = WINDOW, qos: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Publish ``n`` QoS 0 messages on ``in_topic`` as fast as the path takes them and count what arrives on
    ``out_topic``; then ``latency_samples`` one-at-a-time round trips.

    "As fast as the path takes them": at most ``window`` messages are on their way at once (sent, not yet
    received), as a device that paces itself would; so the rate is what the path sustains, and ``received``
    against ``sent`` says what it lost at that rate. A message that never comes back frees its place in the
    window after a quarter second, so losses slow the sender instead of stopping it.

    Returns ``{"per_s", "received", "sent", "delivered_fraction", "p50_ms", "p99_ms"}``. Raises TimeoutError
    when not even one message comes back within ``timeout`` seconds.
    """
    arrived = threading.Event()
    state = {"count": 0, "target": n, "last": 0.0}
    lock = threading.Lock()
    room = threading.Condition(lock)

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with lock:
            state["count"] += 1
            state["last"] = time.perf_counter()
            if state["count"] >= state["target"]:
                arrived.set()
            room.notify()

    subscribed = threading.Event()
    sub = _client(url, "sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.subscribe(out_topic, qos=qos)
    pub = _client(url, "pub")
    try:
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK from the broker")
        payload = b"x" * 64
        start = time.perf_counter()
        given_up = 0  # places in the window freed by waiting, not by an arrival
        for sent in range(n):
            with lock:
                while sent - state["count"] - given_up >= window:
                    if not room.wait(0.25):
                        given_up += 1
            pub.publish(in_topic, payload, qos)
        # Done when everything arrived or nothing more arrived for a second (QoS 0 may drop).
        deadline = time.perf_counter() + timeout
        while not arrived.wait(0.2):
            with lock:
                idle = state["count"] and time.perf_counter() - state["last"] > 1.0
            if idle or time.perf_counter() > deadline:
                break
        with lock:
            received, last = state["count"], state["last"]
        if not received:
            raise TimeoutError(f"nothing came back on {out_topic} within {timeout}s")
        per_s = received / (last - start)

        latencies = []
        for _ in range(latency_samples):
            with lock:
                state["target"] = state["count"] + 1
            arrived.clear()
            t0 = time.perf_counter()
            pub.publish(in_topic, payload, qos)
            if not arrived.wait(5):
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        return {
            "per_s": round(per_s, 1),
            "received": received,
            "sent": n,
            "delivered_fraction": round(received / n, 5),
            "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
        }
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run() -> dict[str, dict[str, Any]]:
    """The baseline: Mosquitto + paho alone, QoS 0 messages/s and p50 round trip on loopback."""
    if not ManagedBroker.available():
        return {}
    with tempfile.TemporaryDirectory(prefix="edgefc-bench-mqtt-") as tmp:
        broker = ManagedBroker(f"127.0.0.1:{_free_port()}", Path(tmp))
        config = broker.write_config()
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((broker.host, broker.port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # polling the port with a deadline; mosquitto has no readiness signal
            result = republish_roundtrip(broker.url, "bench/baseline", "bench/baseline", 50_000)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
    detail = {
        "messages": result["sent"],
        "received": result["received"],
        "qos": 0,
        "payload_bytes": 64,
        "p99_ms": result["p99_ms"],
        "client": "paho-mqtt 2",
        "broker": "mosquitto",
    }
    figures = {
        "mqtt_baseline_per_s": {"value": result["per_s"], "unit": "per_s", "detail": detail},
        "mqtt_baseline_p50_ms": {"value": result["p50_ms"], "unit": "ms", "detail": detail},
    }
    figures.update(_through_gateway(result))
    return figures


RELAY = """
import json
import os
import edgefc.sdk as fc

QOS = int(os.environ.get("QOS", "0"))

def handler(event, context):
    message = json.loads(event)
    fc.publish("bench/out", message["payload"], qos=QOS)
"""


def relay_through_gateway(n: int, *, qos: int = 0, persistence: str | None = None,
                          latency_samples: int = 500) -> dict[str, Any]:  # fmt: skip
    """A device publishes ``n`` messages, the gateway routes them to ``relay``, which publishes each back; a
    subscriber receives them. ``qos`` on every hop; ``persistence`` is the managed Mosquitto's setting."""
    from bench.gateway import BenchGateway, function

    port = _free_port()
    env = {"EDGEFC_MQTT__BROKER": "managed", "EDGEFC_MQTT__LISTEN": f"127.0.0.1:{port}"}
    if persistence:
        env["EDGEFC_MQTT__PERSISTENCE"] = persistence
    routes = [
        {"name": "in", "source": "mqtt", "topic": "bench/in", "target": "function:relay", "qos": qos},
        {"name": "out", "source": "function:relay", "topic": "bench/out", "target": "mqtt:bench/out", "qos": qos},
    ]
    with BenchGateway(env=env) as gateway:
        # A relay is I/O bound (it waits for its fc.publish to be taken): 32 events in flight keep the path
        # busy, as max_concurrency is meant for.
        relay = function("relay", mode="continuous", max_concurrency=32, max_queue=1000, env={"QOS": str(qos)})
        gateway.deploy([relay], {"relay": RELAY}, routes=routes)
        url = f"mqtt://127.0.0.1:{port}"
        republish_roundtrip(url, "bench/in", "bench/out", 200, latency_samples=10, qos=qos)  # warm up
        return republish_roundtrip(url, "bench/in", "bench/out", n, latency_samples=latency_samples, qos=qos)


def _through_gateway(baseline: dict[str, Any], n: int = 20_000) -> dict[str, dict[str, Any]]:
    """A device publishes, the gateway routes to ``relay``, which publishes; a subscriber receives (QoS 0)."""
    result = relay_through_gateway(n)
    detail = {
        "messages": result["sent"], "received": result["received"], "qos": 0, "p99_ms": result["p99_ms"],
        "delivered_fraction": result["delivered_fraction"], "window": WINDOW, "persistence": "every_change",
        "path": "device → Mosquitto → gateway router → relay function (fc.publish) → router → Mosquitto → subscriber",
        "baseline_per_s": baseline["per_s"], "baseline_p50_ms": baseline["p50_ms"],
        "ratio": round(result["per_s"] / baseline["per_s"], 3) if baseline["per_s"] else None,
        "target": ">= 5000 per_s, p50 <= 3 ms",
    }  # fmt: skip
    return {
        "mqtt_to_function_per_s": {"value": result["per_s"], "unit": "per_s", "detail": detail},
        "mqtt_to_function_p50_ms": {"value": result["p50_ms"], "unit": "ms", "detail": detail},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
