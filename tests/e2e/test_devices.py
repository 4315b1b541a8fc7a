"""Devices through a real gateway: drivers, reports routed to applications, get/set/service, crashes, timeouts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.gateway_harness import GatewayProcess, fn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices" / "functions"


def example(name: str) -> dict[str, str]:
    return {"index.py": (EXAMPLES / name / "index.py").read_text()}


def driver(name: str, **settings: Any) -> dict[str, Any]:
    return fn(name, mode="continuous", initializer="index.init", memory_mb=64, **settings)


def device(pk: str, dn: str, drv: str, **settings: Any) -> dict[str, Any]:
    return {"product_key": pk, "device_name": dn, "driver": drv, **settings}


# Records every event it gets, one JSON line each, in the file named by $OUT.
RECORDER = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(event.decode() + "\\n")
"""


def recorded(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def devices_by_name(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    assert gw.client is not None
    response = gw.client.get("/v1/devices")
    assert response.status_code == 200, response.text
    return {f"/{d['product_key']}/{d['device_name']}": d for d in response.json()}


def scenario(tmp_path: Path) -> dict[str, Any]:
    return {
        "version": "devices-1",
        "functions": [
            driver("sensor-driver", config={"period_s": 1}),
            driver("fan-driver"),
            fn("alarm", memory_mb=64, timeout_s=10, config={"threshold": 30, "fan": {"product_key": "pk2", "device_name": "fan-1"}}),
            fn("recorder", memory_mb=64, env={"OUT": str(tmp_path / "sensor-1.jsonl")}),
        ],
        "routes": [
            {"name": "temperature-to-alarm", "source": "device:/pk1/+", "topic": "/sys/+/+/thing/event/property/post",
             "target": "function:alarm"},
            {"name": "sensor-1-only", "source": "device:/pk1/sensor-1", "topic": "#", "target": "function:recorder"},
        ],
        "devices": [
            device("pk1", "sensor-1", "sensor-driver", config={"start": 22, "drift": 0}, tags={"room": "lab"}),
            device("pk1", "sensor-2", "sensor-driver", config={"start": 35, "drift": 0}, tags={"room": "hall"}),
            device("pk2", "fan-1", "fan-driver", tags={"room": "hall"}),
        ],
    }  # fmt: skip


SOURCES = {"sensor-driver": example("sensor-driver"), "fan-driver": example("fan-driver"), "alarm": example("alarm"),
           "recorder": RECORDER}  # fmt: skip


def test_sensors_report_the_alarm_turns_the_fan_on_and_the_cli_shows_it(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy(scenario(tmp_path), SOURCES)
    found = devices_by_name(gateway)
    assert sorted(found) == ["/pk1/sensor-1", "/pk1/sensor-2", "/pk2/fan-1"]
    assert all(d["online"] and d["state"] == "online" for d in found.values())  # registered while starting
    assert found["/pk1/sensor-1"]["driver"] == "sensor-driver" and found["/pk1/sensor-1"]["tags"] == {"room": "lab"}

    # sensor-2 reads 35 °C > 30: its report reaches the alarm, whose set_properties reaches the fan's callback,
    # and the fan reports its new state.
    fan = gateway.wait_for(lambda: (f := devices_by_name(gateway)["/pk2/fan-1"])["properties"]["on"]["value"] and f,
                           timeout=10, what="the fan to be on")  # fmt: skip
    assert fan["properties"]["speed"]["value"] == 1 and fan["last_seen"] >= fan["properties"]["on"]["time"]
    assert gateway.status("alarm")["invocations"] >= 1

    # Reports keep coming every second, with Link IoT Edge's payload shape, only from the device the route names.
    # The route's "#" also matches the device's status messages (the first: it came online).
    status = "/as/mqtt/status/pk1/sensor-1"
    reports = lambda: [e for e in recorded(tmp_path / "sensor-1.jsonl") if e["topic"] != status]  # noqa: E731
    events = gateway.wait_for(lambda: (e := reports()) and len(e) >= 3 and e, timeout=10, what="three reports of sensor-1")
    assert json.loads(recorded(tmp_path / "sensor-1.jsonl")[0]["payload"])["status"] == "online"
    assert {e["source"]["id"] for e in events} == {"/pk1/sensor-1"} and {e["source"]["type"] for e in events} == {"device"}
    assert {e["topic"] for e in events} == {"/sys/pk1/sensor-1/thing/event/property/post"}
    times = [json.loads(e["payload"])["temperature"]["time"] for e in events]
    assert json.loads(events[-1]["payload"])["temperature"]["value"] == 22
    assert all(0.5 < (b - a) / 1000 < 2.0 for a, b in zip(times[1:], times[2:], strict=False))  # ~1 s apart
    sensor = devices_by_name(gateway)["/pk1/sensor-1"]
    assert sensor["properties"]["temperature"] == {"value": 22, "time": sensor["properties"]["temperature"]["time"]}
    assert time.time() * 1000 - sensor["last_seen"] < 5000

    # The same operations over HTTP and the CLI.
    assert gateway.client is not None
    assert gateway.client.get("/v1/devices/pk1/sensor-2/properties?keys=temperature").json() == {"temperature": 35}
    assert gateway.client.post("/v1/devices/pk2/fan-1/services/toggle").json() == {"on": False, "speed": 1}
    listed = gateway.cli("devices", "list")
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout.decode()
    assert "/pk1/sensor-2" in text and "sensor-driver" in text and "online" in text and "temperature=35" in text
    assert "/pk1/sensor-1" not in gateway.cli("devices", "list", "--tag", "room=hall").stdout.decode()
    shown = gateway.cli("devices", "set", "pk2", "fan-1", "on=true", "speed=3")
    assert shown.returncode == 0 and json.loads(shown.stdout) == {"on": True, "speed": 3}
    got = gateway.cli("devices", "get", "pk2", "fan-1", "speed")
    assert got.returncode == 0 and json.loads(got.stdout) == {"speed": 3}
    refused = gateway.cli("devices", "call", "pk2", "fan-1", "explode")
    assert refused.returncode == 2 and "DeviceError 109005" in refused.stderr.decode()
    assert json.loads(gateway.cli("devices", "show", "pk2", "fan-1").stdout)["properties"]["speed"]["value"] == 3
    missing = gateway.cli("devices", "show", "pk9", "nope")
    assert missing.returncode == 2 and "NotFound" in missing.stderr.decode()


# A driver whose handler lets a test crash it, check a report for a device it never registered, or call
# anything; its callbacks can be slow or raise.
DRIVER = """
import json, os, threading, time
import edgefc.sdk as fc

CLIENTS = {}

def on_get(keys):
    if "slow" in keys:
        time.sleep(30)
    if "boom" in keys:
        raise ValueError("sensor bus jammed")
    return {"pid": os.getpid()}

def init(context):
    if os.path.exists(os.environ.get("HOLD", "/nonexistent")):
        os._exit(5)  # a broken bus: the instance cannot start while this file exists
    for d in fc.driver.devices():
        if d.config and d.config.get("skip"):
            continue
        client = fc.driver.ThingClient(d.product_key, d.device_name, on_get=on_get)
        client.register_and_online()
        CLIENTS[d.device_name] = client

def handler(event, context):
    request = json.loads(event)
    if request["do"] == "crash":
        os._exit(7)
    client = CLIENTS.get(request.get("device")) or fc.driver.ThingClient(request["pk"], request["device"])
    try:
        getattr(client, request["do"])(*request.get("args", []))
    except fc.things.ThingError as exc:
        return {"type": exc.type, "code": exc.code, "message": exc.message}
    return {"ok": True}
"""


def test_driver_crash_takes_its_devices_offline_and_they_come_back(gateway: GatewayProcess, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    manifest = {"functions": [driver("drv", timeout_s=5, env={"HOLD": str(hold)})],
                "devices": [device("pk", "d1", "drv"), device("pk", "d2", "drv")]}  # fmt: skip
    gateway.deploy(manifest, {"drv": DRIVER})
    assert gateway.client is not None
    old_pid = gateway.client.get("/v1/devices/pk/d1/properties").json()["pid"]
    hold.touch()  # the restarts fail until the file goes: the driver is down for a while
    assert gateway.invoke("drv", b'{"do": "crash"}').status_code == 502

    def down() -> Any:
        answer = gateway.client.get("/v1/devices/pk/d1/properties") if gateway.client else None
        found = devices_by_name(gateway)
        return answer is not None and answer.status_code == 503 and not any(d["online"] for d in found.values()) and answer

    answer = gateway.wait_for(down, timeout=5, what="the devices offline and calls refused")
    assert answer.json()["error"]["type"] == "Unavailable" and "driver 'drv' has no running instance" in answer.text
    assert {d["state"] for d in devices_by_name(gateway).values()} == {"unregistered"}
    hold.unlink()
    gateway.wait_for(lambda: all(d["online"] for d in devices_by_name(gateway).values()), timeout=10, what="devices online again")
    new_pid = gateway.client.get("/v1/devices/pk/d2/properties").json()["pid"]
    assert new_pid != old_pid and gateway.status("drv")["state"] == "running"


def test_slow_or_raising_callbacks_give_errors_and_the_driver_keeps_running(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [driver("drv")], "devices": [device("pk", "d1", "drv")]}, {"drv": DRIVER})
    assert gateway.client is not None
    pid = gateway.client.get("/v1/devices/pk/d1/properties").json()["pid"]
    for _ in range(6):  # more hung callbacks than the worker has callback threads
        started = time.monotonic()
        slow = gateway.client.get("/v1/devices/pk/d1/properties", params={"keys": "slow", "timeout": "0.3"})
        assert slow.status_code == 504 and slow.json()["error"]["type"] == "Timeout", slow.text
        assert "did not answer get properties of /pk/d1 within 0.3 s" in slow.json()["error"]["message"]
        assert time.monotonic() - started < 2
    boom = gateway.client.get("/v1/devices/pk/d1/properties", params={"keys": "boom"})
    assert boom.status_code == 502 and boom.json()["error"]["type"] == "Handled"
    assert "ValueError: sensor bus jammed" in boom.json()["error"]["message"]
    assert any("sensor bus jammed" in line for line in boom.json()["error"]["stack"])
    assert gateway.client.get("/v1/devices/pk/d1/properties").json() == {"pid": pid}
    assert gateway.status("drv")["restarts"] == 0 and devices_by_name(gateway)["/pk/d1"]["online"]


PROBE = """
import json
import edgefc.sdk as fc

def handler(event, context):
    request = json.loads(event)
    try:
        return {"ok": getattr(fc.things, request["op"])(*request["args"], **request.get("kwargs", {}))}
    except fc.things.ThingError as exc:
        return {"type": exc.type, "code": exc.code, "message": exc.message, "class": type(exc).__name__}
"""


def test_bad_input_and_refusals(gateway: GatewayProcess, tmp_path: Path) -> None:
    base = {"version": "good", "functions": [driver("drv"), driver("fan-driver"), fn("probe"), fn("plain")],
            "devices": [device("pk", "d1", "drv"), device("pk", "d2", "drv", config={"skip": True}),
                        device("pk2", "fan-1", "fan-driver")]}  # fmt: skip
    sources = {"drv": DRIVER, "fan-driver": example("fan-driver"), "probe": PROBE, "plain": RECORDER}
    gateway.deploy(base, sources)
    assert gateway.client is not None

    # Manifests with bad devices: 422 with every problem by its path, nothing applied.
    bad = {**base, "version": "bad", "devices": [
        device("pk", "d1", "drv"), device("pk", "d1", "drv"), device("pk", "x", "nobody"), device("pk", "y", "plain"),
    ]}  # fmt: skip
    response = gateway.deploy(bad, sources, expect=422)
    problems = response.json()["error"]["details"]
    assert any(p.startswith("devices[1]") and "duplicate device /pk/d1" in p for p in problems), problems
    assert any(p.startswith("devices[2].driver") and "no function named 'nobody'" in p for p in problems), problems
    assert any(p.startswith("devices[3].driver") and "continuous" in p for p in problems), problems
    assert gateway.client.get("/v1/deployment").json()["version"] == "good"
    assert sorted(devices_by_name(gateway)) == ["/pk/d1", "/pk/d2", "/pk2/fan-1"]

    # Unknown devices: 404 on every path.
    for method, path in (("GET", "/v1/devices/pk/zz"), ("GET", "/v1/devices/pk/zz/properties"),
                         ("POST", "/v1/devices/pk/zz/properties"), ("POST", "/v1/devices/zz/d1/services/x")):  # fmt: skip
        answer = gateway.client.request(method, path, json={"a": 1})
        assert answer.status_code == 404 and answer.json()["error"]["type"] == "NotFound", (path, answer.text)

    # A refused set: 422 with the driver's code and message; a body that is not an object: 400.
    refused = gateway.client.post("/v1/devices/pk2/fan-1/properties", json={"speed": 9})
    assert refused.status_code == 422
    assert refused.json() == {"error": {"type": "DeviceError", "code": 100001, "message": "speed must be 0..3, got 9"}}
    assert gateway.client.post("/v1/devices/pk2/fan-1/properties", content=b"[1]").status_code == 400
    assert gateway.client.post("/v1/devices/pk2/fan-1/properties", content=b"{").status_code == 400
    assert gateway.client.get("/v1/devices/pk/d1/properties", params={"timeout": "-1"}).status_code == 422

    # A device its driver never registered: callers get 503, the driver's own reports are refused.
    unregistered = gateway.client.get("/v1/devices/pk/d2/properties")
    assert unregistered.status_code == 503 and "not registered" in unregistered.json()["error"]["message"]
    report = gateway.invoke("drv", json.dumps({"do": "report_properties", "pk": "pk", "device": "d2", "args": [{"t": 1}]}).encode())
    assert report.json()["type"] == "DeviceError" and report.json()["code"] == 109000, report.text
    foreign = gateway.invoke("drv", json.dumps({"do": "register_and_online", "pk": "pk2", "device": "fan-1"}).encode())
    assert foreign.json()["type"] == "NotFound" and "not assigned to driver 'drv'" in foreign.json()["message"]
    # Offline, then online again: while offline, reports are refused and callers get 503.
    assert gateway.invoke("drv", b'{"do": "offline", "device": "d1"}').json() == {"ok": True}
    offline = gateway.invoke("drv", json.dumps({"do": "report_event", "device": "d1", "args": ["alert", {}]}).encode())
    assert offline.json()["code"] == 109001
    assert gateway.client.get("/v1/devices/pk/d1/properties").status_code == 503
    assert not devices_by_name(gateway)["/pk/d1"]["online"]
    assert gateway.invoke("drv", b'{"do": "online", "device": "d1"}').json() == {"ok": True}
    assert gateway.client.get("/v1/devices/pk/d1/properties").status_code == 200
    bad_event = gateway.invoke("drv", json.dumps({"do": "report_event", "device": "d1", "args": ["a/+", {}]}).encode())
    assert bad_event.json()["type"] == "ValidationError" and bad_event.json()["code"] == 100001, bad_event.text

    # The same errors through fc.things inside a function.
    def probe(op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return gateway.invoke("probe", json.dumps({"op": op, "args": args, "kwargs": kwargs}).encode()).json()  # type: ignore[no-any-return]

    assert probe("get_properties", "pk", "nope", []) == {
        "type": "NotFound", "code": 109000, "message": "no device /pk/nope in the applied deployment", "class": "NotFound"}  # fmt: skip
    assert probe("set_properties", "pk2", "fan-1", {"speed": 9})["code"] == 100001
    assert probe("get_properties", "pk", "d2", [])["class"] == "Unavailable"
    assert probe("get_properties", "pk", "d1", ["slow"], timeout=0.3)["class"] == "Timeout"
    assert probe("get_properties", "pk", "d1", ["boom"])["class"] == "DriverFailed"
    assert probe("set_properties", "pk2", "fan-1", {"on": True}) == {"ok": {"on": True, "speed": 1}}
    assert [d["device_name"] for d in probe("find", {"room": "none"})["ok"]] == []
    assert [d["device_name"] for d in probe("find", {})["ok"]] == ["d1", "d2", "fan-1"]
