"""Devices: a driver's property report routed to a function, and an application's ``set_properties`` round trip.

- ``report_to_function_p50_ms``: a Link IoT Edge driver (``lethingaccesssdk``, registered at import, as on Link
  IoT Edge) reports ``reportProperties({"seq": n, "sent": time.time()})`` every few milliseconds (no queueing);
  a route ``device:/bench/+`` → ``function:sink`` delivers each; the sink notes ``time.time()`` on arrival.
  Baseline: the same trip through edgefc's native SDK (``fc.driver.ThingClient.report_properties``) in the same
  run; target ≤ 1.1× of it. The detail also keeps the trip of ``fc.publish`` from a driver (the router and
  delivery without the device layer).
- ``report_to_function_per_s``: the driver reports a burst as fast as one thread can; delivered reports per
  second at the sink (first send to last arrival). Reports the router dropped (QoS 0 lane full) are counted.
- ``set_properties_roundtrip_p50_ms``: an application calls ``fc.things.set_properties`` on the driver's device
  ``calls`` times, timed with ``perf_counter`` in its handler: app → gateway → driver callback → back. Baseline:
  ``fc.invoke`` of a trivial function from the same handler (the same number of socket hops).

Run alone with ``python -m bench.bench_devices``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import yaml

from bench.figure import Target, at_most, figure, percentile
from bench.gateway import BenchGateway, GatewayError, function, zip_source

log = logging.getLogger("bench.devices")

DRIVER = """
import json, time
import edgefc.sdk as fc

CLIENT = None

def init(context):
    global CLIENT
    CLIENT = fc.driver.ThingClient("bench", "dev-1", on_set=lambda props: props)
    CLIENT.register_and_online()

def handler(event, context):
    request = json.loads(event)
    n, pause = request["n"], request["interval_ms"] / 1000
    t0 = time.perf_counter()
    for seq in range(n):
        if request["via"] == "device":
            CLIENT.report_properties({"seq": seq, "sent": time.time()})
        else:
            fc.publish("bench/publish", json.dumps({"seq": {"value": seq}, "sent": {"value": time.time()}}))
        if pause:
            time.sleep(pause)
    return {"sent": n, "seconds": time.perf_counter() - t0}
"""

SINK = """
import json, time

SEEN = []

def handler(event, context):
    if event == b"collect":
        out = list(SEEN)
        SEEN.clear()
        return out
    now = time.time()
    report = json.loads(json.loads(event)["payload"])
    SEEN.append([report["seq"]["value"], report["sent"]["value"], now])
"""

SHIM_DRIVER = """
import json, time
import lethingaccesssdk

class Fan(lethingaccesssdk.ThingCallback):
    def setProperties(self, input_value):
        return 0, {}

CLIENT = lethingaccesssdk.ThingAccessClient(lethingaccesssdk.Config().getThingInfos()[0])
CLIENT.registerAndOnline(Fan())

def handler(event, context):
    request = json.loads(event)
    n, pause = request["n"], request["interval_ms"] / 1000
    t0 = time.perf_counter()
    for seq in range(n):
        CLIENT.reportProperties({"seq": seq, "sent": time.time()})
        if pause:
            time.sleep(pause)
    return {"sent": n, "seconds": time.perf_counter() - t0}
"""

APP = """
import time
import edgefc.sdk as fc

def handler(event, context):
    calls, warmup = (int(x) for x in event.split(b","))
    out = {}
    for what, call in (("set", lambda: fc.things.set_properties("bench", "dev-1", {"speed": 2})),
                       ("invoke", lambda: fc.invoke("echo", b"x"))):
        for _ in range(warmup):
            call()
        ms = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            ms.append(round((time.perf_counter() - t0) * 1000, 4))
        out[what] = ms
    return out
"""


def _deploy(gw: BenchGateway) -> None:
    manifest = {
        "version": "bench-devices",
        "functions": [
            function("driver", mode="continuous", initializer="index.init", memory_mb=128, timeout_s=120),
            function("shimdriver", mode="continuous", memory_mb=128, timeout_s=120),
            function("sink", memory_mb=128, max_queue=100000), function("app", memory_mb=128, timeout_s=120),
            function("echo", memory_mb=128),
        ],
        "routes": [
            {"name": "reports", "source": "device:/bench/+", "topic": "/sys/+/+/thing/event/property/post", "target": "function:sink"},
            {"name": "published", "source": "function:driver", "topic": "bench/#", "target": "function:sink"},
        ],
        "devices": [{"product_key": "bench", "device_name": "dev-1", "driver": "driver"},
                    {"product_key": "bench", "device_name": "dev-2", "driver": "shimdriver"}],
    }  # fmt: skip
    sources = {"driver": DRIVER, "shimdriver": SHIM_DRIVER, "sink": SINK, "app": APP, "echo": "def handler(event, context):\n    return event\n"}
    files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", yaml.safe_dump(manifest).encode(), "application/yaml"))]
    files += [(name, (f"{name}.zip", zip_source(src), "application/zip")) for name, src in sources.items()]
    response = gw._admin().put("/v1/deployment", files=files)
    if response.status_code != 200:
        raise GatewayError(f"deploy failed ({response.status_code}): {response.text}\n{gw.log_tail()}")


def _call(gw: BenchGateway, name: str, payload: bytes) -> Any:
    status, body = gw.invoke(name, payload)
    if status != 200:
        raise GatewayError(f"{name} failed: {status} {body[:2000]!r}")
    return json.loads(body) if body else None


def _collect(gw: BenchGateway, expected: int, timeout: float = 30.0) -> list[list[float]]:
    """What the sink saw, once ``expected`` arrived or arrivals stopped for a second."""
    seen: list[list[float]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while len(seen) < expected and time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
        got = _call(gw, "sink", b"collect")
        if got:
            seen += got
            quiet_since = time.monotonic()
        else:
            time.sleep(0.02)
    return seen


def _trip(gw: BenchGateway, via: str, n: int, interval_ms: float) -> tuple[list[float], list[list[float]], float]:
    """(latencies in ms, what the sink saw, seconds the driver took to send)."""
    _collect(gw, 0)  # empty the sink
    who = "shimdriver" if via == "shim" else "driver"
    sent = _call(gw, who, json.dumps({"via": via, "n": n, "interval_ms": interval_ms}).encode())
    seen = _collect(gw, n)
    return [(arrived - at) * 1000 for _, at, arrived in seen], seen, sent["seconds"]


def run(reports: int = 1000, burst: int = 5000, calls: int = 2000, rounds: int = 4) -> dict[str, dict[str, Any]]:
    """Deploy a driver, a sink, an app and an echo function on a process-isolation gateway; measure."""
    with BenchGateway(isolation="process") as gw:
        _deploy(gw)
        for name in ("dev-1", "dev-2"):
            gw.wait_for(lambda n=name: gw._admin().get(f"/v1/devices/bench/{n}").json().get("online"), what=f"{name} online")
        _call(gw, "sink", b"collect")
        log.info("latency: %d paced reports through the shim, natively, then %d paced publishes", reports, reports)
        _trip(gw, "shim", 100, 2)  # warm-up
        _trip(gw, "device", 100, 2)
        # Interleaved rounds, alternating which goes first: a busy machine's drift lands on both alike.
        shim_ms: list[float] = []
        device_ms: list[float] = []
        for i in range(rounds):
            for via in (("shim", "device") if i % 2 == 0 else ("device", "shim")):
                (shim_ms if via == "shim" else device_ms).extend(_trip(gw, via, reports // rounds, 3)[0])
        publish_ms, _, _ = _trip(gw, "publish", reports, 3)
        log.info("throughput: a burst of %d reports", burst)
        _, seen, send_s = _trip(gw, "device", burst, 0)
        spread = max(arrived for _, _, arrived in seen) - min(at for _, at, _ in seen) if seen else float("nan")
        dropped = gw._admin().get("/v1/queues").json()
        log.info("set_properties: %d calls (and %d fc.invoke calls)", calls, calls)
        timed = _call(gw, "app", f"{calls},100".encode())
    per_s = len(seen) / spread if seen else 0.0
    lanes = {row["target"]: row for row in dropped.get("targets", [])}
    return {
        "report_to_function_p50_ms": figure(
            percentile(shim_ms, 50), "ms", n=len(shim_ms), target=Target("<=", 2.0, "<=", 1.1),
            baseline=percentile(device_ms, 50),
            baseline_what="the same trip through edgefc's native fc.driver report_properties, same run, p50",
            p99_ms=round(percentile(shim_ms, 99), 3), baseline_p99_ms=round(percentile(device_ms, 99), 3),
            lost=reports - len(shim_ms), native_lost=reports - len(device_ms),
            publish_p50_ms=round(percentile(publish_ms, 50), 3),
            how="lethingaccesssdk reportProperties every 3 ms; sink notes time.time() on arrival",
        ),
        "report_to_function_per_s": figure(
            per_s, "per_s", n=len(seen), sent=burst, delivered=len(seen), driver_send_per_s=round(burst / send_s),
            sink_lane=lanes.get("function:sink"), how="one driver thread reporting back to back (each report waits "
            "for the gateway's ack); QoS 0 route; first send to last arrival",
        ),
        "set_properties_roundtrip_p50_ms": figure(
            percentile(timed["set"], 50), "ms", n=len(timed["set"]), target=at_most(2.0),
            baseline=percentile(timed["invoke"], 50), baseline_what="fc.invoke('echo') from the same handler, p50",
            p99_ms=round(percentile(timed["set"], 99), 3), baseline_p99_ms=round(percentile(timed["invoke"], 99), 3),
            how="fc.things.set_properties timed with perf_counter in the app's handler; the driver's on_set echoes",
        ),
    }  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
