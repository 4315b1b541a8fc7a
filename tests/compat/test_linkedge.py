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

# Everything an application does with lecoresdk, on request; errors come back as their code and message.
PROBE = """
import json
import lecoresdk

iot_data = lecoresdk.IoTData()
client = lecoresdk.Client()

def handler(event, context):
    request = json.loads(event)
    target = client if request["op"] == "invoke_function" else iot_data
    try:
        answer = getattr(target, request["op"])(request["params"])
    except Exception as exc:
        return {"error": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}
    if isinstance(answer, dict) and isinstance(answer.get("payload"), bytes):
        answer["payload"] = answer["payload"].decode()
    return {"answer": answer, "module": lecoresdk.__file__}
"""

# A driver that uses only lethingaccesssdk names; its handler runs client methods on request.
TSL_DRIVER = """
import json
import lethingaccesssdk

class Thermostat(lethingaccesssdk.ThingCallback):
    def getProperties(self, input_value):
        return 0, {"target": 21}

config = lethingaccesssdk.Config(lethingaccesssdk.getConfig())
CLIENTS = {}
for info in config.getThingInfos():
    CLIENTS[info["deviceName"]] = lethingaccesssdk.ThingAccessClient(info)
    CLIENTS[info["deviceName"]].registerAndOnline(Thermostat())

def handler(event, context):
    request = json.loads(event)
    if request["op"] == "driver_info":
        return {"driver": config.getDriverInfo(), "things": config.getThingInfos()}
    client = CLIENTS[request["device"]]
    try:
        return {"answer": getattr(client, request["op"])(*request.get("args", []))}
    except Exception as exc:
        return {"error": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}
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
            fn("probe", memory_mb=64, timeout_s=10),
            fn("greeter", memory_mb=64),
            fn("failing", memory_mb=64),
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
        "recorder": RECORDER, "probe": PROBE,
        "greeter": "def handler(event, context):\n    return b'hello ' + event\n",
        "failing": "def handler(event, context):\n    raise KeyError('gone')\n",
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

    # The sensor refuses a set with its own code (the published sample's 100001) and message.
    refused = gateway.client.post("/v1/devices/lightpk/light-1/properties", json={"MeasuredIlluminance": 5})
    assert refused.status_code == 422
    assert refused.json()["error"] == {"type": "DeviceError", "code": 100001, "message": "MeasuredIlluminance is read-only"}
    value = gateway.client.get("/v1/devices/lightpk/light-1/properties?keys=MeasuredIlluminance").json()
    assert set(value) == {"MeasuredIlluminance"} and 100 <= value["MeasuredIlluminance"] <= 600

    def probe(op: str, params: Any) -> dict[str, Any]:
        response = gateway.invoke("probe", json.dumps({"op": op, "params": params}).encode())
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    got = probe("getThingProperties", {"productKey": "lightpk", "deviceName": "light-1", "payload": ["MeasuredIlluminance"]})
    assert set(got["answer"]) == {"MeasuredIlluminance"} and "/edgefc/compat/lecoresdk/" in got["module"]
    assert probe("setThingProperties", {"productKey": "lamppk", "deviceName": "lamp-1", "payload": {"LightSwitch": 0}})["answer"] == {"LightSwitch": 0}
    assert probe("setThingProperties", {"productKey": "lamppk", "deviceName": "lamp-1", "payload": {"LightSwitch": 7}}) == {
        "error": "DeviceError", "code": 100001, "message": "LightSwitch must be 0 or 1"}  # fmt: skip
    assert probe("callThingService", {"productKey": "lightpk", "deviceName": "light-1", "service": "yourFunc", "payload": {}})["answer"] == {}
    assert probe("callThingService", {"productKey": "lamppk", "deviceName": "lamp-1", "service": "x"})["code"] == 109005
    assert probe("getThingProperties", {"productKey": "lightpk", "deviceName": "nope", "payload": []})["code"] == 109000
    assert probe("getThingProperties", {"productKey": "lightpk"})["code"] == 100001  # missing deviceName
    tagged = probe("getThingsWithTags", {"payload": [{"key": "room", "value": "hall"}]})["answer"]
    assert tagged == [{"productKey": "lamppk", "deviceName": "lamp-1"}, {"productKey": "lightpk", "deviceName": "light-1"}]
    assert probe("publish", {"topic": "/alerts/ignored", "payload": "x"})["answer"] is None

    ok = probe("invoke_function", {"functionId": "svc/greeter", "invocationType": "RequestResponse", "payload": "edge",
                                   "invokerContext": {"custom": {}}})["answer"]  # fmt: skip
    assert ok == {"statusCode": 200, "functionError": None, "payload": "hello edge"}
    failed = probe("invoke_function", {"functionId": "failing", "payload": ""})["answer"]
    assert failed["statusCode"] == 200 and failed["functionError"] == "Handled"
    assert "KeyError" in json.loads(failed["payload"])["errorMessage"]
    missing = probe("invoke_function", {"functionId": "nobody"})["answer"]
    assert missing["statusCode"] == 404 and missing["functionError"] == "NotFound"
    assert probe("invoke_function", {"functionId": "greeter", "invocationType": "Event"})["answer"]["statusCode"] == 202


def test_thing_access_client_methods_and_tsl(gateway: GatewayProcess) -> None:
    tsl = {"schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json", "properties": [{"identifier": "target"}]}
    manifest = {
        "functions": [fn("thermo-driver", mode="continuous", memory_mb=64, config={"bus": "rs485"})],
        "devices": [{"product_key": "tpk", "device_name": "t1", "driver": "thermo-driver",
                     "config": {"tsl": tsl, "tsl_ext_info": {"modbus": 3}}},
                    {"product_key": "tpk", "device_name": "t2", "driver": "thermo-driver"}],
    }  # fmt: skip
    gateway.deploy(manifest, {"thermo-driver": TSL_DRIVER})
    assert gateway.client is not None

    def run(op: str, *args: Any, device: str = "t1") -> dict[str, Any]:
        response = gateway.invoke("thermo-driver", json.dumps({"op": op, "device": device, "args": args}).encode())
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    info = run("driver_info")
    assert info["driver"] == {"bus": "rs485"}
    assert info["things"] == [{"productKey": "tpk", "deviceName": "t1", "custom": {"tsl": tsl, "tsl_ext_info": {"modbus": 3}}},
                              {"productKey": "tpk", "deviceName": "t2", "custom": None}]  # fmt: skip
    assert json.loads(run("getTsl")["answer"]) == tsl
    assert json.loads(run("getTslExtInfo")["answer"]) == {"modbus": 3}
    assert json.loads(run("getTslConfig")["answer"]) == {"modbus": 3}
    assert json.loads(run("getTsl", device="t2")["answer"])["profile"] == {"productKey": "tpk"}
    assert gateway.client.get("/v1/devices/tpk/t1/properties").json() == {"target": 21}
    # The base ThingCallback refuses what a device does not override.
    refused = gateway.client.post("/v1/devices/tpk/t1/properties", json={"target": 5})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == 109003

    assert run("reportEvent", "overheat", {"temperature": 90}) == {"answer": None}
    assert run("offline") == {"answer": None} and not devices_by_name(gateway)["/tpk/t1"]["online"]
    assert run("reportProperties", {"target": 1})["code"] == 109001
    assert run("online") == {"answer": None} and devices_by_name(gateway)["/tpk/t1"]["online"]
    assert run("reportProperties", {"target": 22}) == {"answer": None}
    assert devices_by_name(gateway)["/tpk/t1"]["properties"]["target"]["value"] == 22
    assert run("unregister") == {"answer": None}
    assert devices_by_name(gateway)["/tpk/t1"]["state"] == "unregistered"
    assert run("reportProperties", {"target": 1})["code"] == 109000
    assert run("cleanup", device="t2") == {"answer": None}
    assert gateway.client.get("/v1/devices/tpk/t2/properties").status_code == 503


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
