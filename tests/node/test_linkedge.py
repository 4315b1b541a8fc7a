"""Link IoT Edge Node.js code on a real gateway: the example driver (linkedge-thing-access-sdk) and app
(linkedge-core-sdk), checked against a Python driver of the same lamp written for the Python compat shim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.node.conftest import deploy_once, entry, js, logs_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nodejs"

# The same lamp as examples/nodejs/functions/lamp-driver, written for Link IoT Edge's Python SDK.
PY_LAMP = """
import json
import lethingaccesssdk

class Lamp(lethingaccesssdk.ThingCallback):
    def __init__(self, brightness):
        self.state = {"brightness": brightness, "blinks": 0}

    def getProperties(self, keys):
        unknown = [k for k in keys if k not in self.state]
        if unknown:
            return 109002, {"message": "no property " + ", ".join(unknown)}
        return 0, {k: self.state[k] for k in keys}

    def setProperties(self, properties):
        if list(properties) != ["brightness"]:
            return 109003, {"message": "only brightness can be set"}
        self.state["brightness"] = max(0, min(100, int(properties["brightness"])))
        return 0, {}

    def callService(self, name, args):
        if name != "blink":
            return 109005, {"message": "no service " + name}
        self.state["blinks"] += int(args.get("times", 1))
        return 0, {"blinks": self.state["blinks"]}

for info in lethingaccesssdk.Config(lethingaccesssdk.getConfig()).getThingInfos():
    lamp = Lamp(json.loads(info["custom"])["brightness"])  # the Python SDK gives custom as JSON text
    client = lethingaccesssdk.ThingAccessClient(info)
    client.registerAndOnline(lamp)
    client.reportProperties({"brightness": lamp.state["brightness"]})

def handler(event, context):
    return None
"""

# linkedge-core-sdk calls on request, answering what the callback got: (err.message, err.code) or data.
PROBE = """
const { IoTData, FCClient } = require('linkedge-core-sdk');
const iotData = new IoTData();
const fcClient = new FCClient();
exports.handler = (event, context, callback) => {
  const request = JSON.parse(event.toString());
  const target = request.op === 'invokeFunction' ? fcClient : iotData;
  target[request.op](request.params, (err, data) => {
    if (err) return callback(null, {error: err.message, code: err.code ?? null});
    if (data && Buffer.isBuffer(data.payload)) data.payload = data.payload.toString();
    callback(null, {data: data === undefined ? null : data});
  });
};
"""

# A driver in the style of the SDK's oldest examples (LightSensor): FC_DRIVER_CONFIG read at module load.
OLD_STYLE = """
const { RESULT_SUCCESS, RESULT_FAILURE, ThingAccessClient } = require('linkedge-thing-access-sdk');
const driverConfig = JSON.parse(process.env.FC_DRIVER_CONFIG);
const configs = driverConfig['deviceList'];
if (!Array.isArray(configs) || configs.length === 0) throw new Error('No device is bound with the driver!');
configs.forEach((config) => {
  const callbacks = {
    setProperties: () => ({code: RESULT_FAILURE, message: 'The property is read-only.'}),
    getProperties: (keys) => ({code: RESULT_SUCCESS, message: 'success', params: {illuminance: config.custom.lux}}),
    callService: () => ({code: RESULT_FAILURE, message: 'The requested service does not exist.'}),
  };
  const client = new ThingAccessClient(config, callbacks);
  client.setup().then(() => client.registerAndOnline()).catch((err) => console.log(err));
});
module.exports.handler = function (event, context, callback) { callback(null); };
"""

PY_APP = """
import lecoresdk

def handler(event, context):
    return lecoresdk.IoTData().getThingProperties({"productKey": "lamppk", "deviceName": "lamp-2", "payload": ["brightness"]})
"""


def _deploy(gw: GatewayProcess) -> None:
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLE / "deployment.yaml").read_text())
    sources: dict[str, Any] = {}
    for function in manifest["functions"]:
        folder = EXAMPLE / function["code"]
        sources[function["name"]] = {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}
        function["code"] = f"./{function['name']}"
    manifest["functions"] += [fn("py-lamp", mode="continuous"), entry("probe"), fn("py-app"),
                              entry("old-style", mode="continuous")]
    manifest["devices"].append({"product_key": "pypk", "device_name": "lamp-1", "driver": "py-lamp",
                                "config": {"brightness": 30}, "tags": {"room": "lab"}})  # fmt: skip
    manifest["devices"].append({"product_key": "oldpk", "device_name": "sensor-1", "driver": "old-style",
                                "config": {"lux": 420}})  # fmt: skip
    sources.update({"py-lamp": PY_LAMP, "probe": js(PROBE), "py-app": PY_APP, "old-style": js(OLD_STYLE)})
    manifest["version"] = "linkedge-2"
    deploy_once(gw, manifest, sources)
    assert gw.client is not None

    def ready() -> bool:
        assert gw.client is not None
        found = gw.client.get("/v1/devices").json()
        return all(d["online"] and (d["properties"] or d["product_key"] == "oldpk") for d in found)

    gw.wait_for(ready, what="every device online, every lamp with a report")


def _driver_answers(gw: GatewayProcess, pk: str) -> list[tuple[int, Any]]:
    client = gw.client
    assert client is not None
    base = f"/v1/devices/{pk}/lamp-1"
    # The module's tests share the deployment: start from the configured brightness whatever ran before.
    assert client.post(f"{base}/properties", json={"brightness": 30}).status_code == 200
    calls = [
        client.get(f"{base}/properties", params={"keys": "brightness"}),
        client.get(f"{base}/properties", params={"keys": "brightness,color"}),
        client.post(f"{base}/properties", json={"brightness": 55}),
        client.get(f"{base}/properties", params={"keys": "brightness"}),
        client.post(f"{base}/properties", json={"color": "red"}),
        client.post(f"{base}/services/blink", json={"times": 2}),
        client.post(f"{base}/services/blink", json={}),
        client.post(f"{base}/services/fly", json={}),
    ]
    return [(r.status_code, r.json()) for r in calls] + [(200, client.get(base).json()["online"])]


def test_node_driver_answers_as_the_python_compat_driver_does(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    node, python = _driver_answers(gw, "lamppk"), _driver_answers(gw, "pypk")
    # The same statuses and answers; a refusal's code differs as the two real SDKs differ: the Node.js one passes
    # the callback's own code on, the Python one reports any non-zero code as 100000 (lethingaccesssdk).
    assert [(s, b if s == 200 else None) for s, b in node] == [(s, b if s == 200 else None) for s, b in python]
    assert python[1][0] == 422 and python[1][1]["error"]["code"] == 100000
    assert node[0] == (200, {"brightness": 30})
    assert node[1][0] == 422 and node[1][1]["error"]["code"] == 109002
    assert node[3] == (200, {"brightness": 55})
    assert node[7][1]["error"] == {"type": "DeviceError", "code": 109005, "message": "no service fly"}
    assert node[6][0] == 200 and node[6][1]["blinks"] == node[5][1]["blinks"] + 1


def test_node_app_drives_lamps_through_linkedge_core_sdk(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    result = gw.invoke("lamp-app", b'{"brightness": 80}')
    assert result.status_code == 200, result.text
    assert result.json() == {"lamps": [{"productKey": "lamppk", "deviceName": "lamp-1", "brightness": 80}]}
    # A driver written the oldest way (FC_DRIVER_CONFIG at load) registers and answers too.
    assert gw.client is not None
    assert gw.client.get("/v1/devices/oldpk/sensor-1/properties", params={"keys": "illuminance"}).json() == {"illuminance": 420}
    # A Python lecoresdk application reads the Node.js driver's lamp.
    assert gw.invoke("py-app").json() == {"brightness": 70}
    # The lamps' reports reach the app over its route.
    gw.wait_for(lambda: [e for e in logs_of(gw, "lamp-app") if "/sys/lamppk/lamp-1/thing/event/property/post" in str(e["message"])],
                what="a routed lamp report")  # fmt: skip


def _probe(gw: GatewayProcess, op: str, params: dict[str, Any]) -> Any:
    response = gw.invoke("probe", json.dumps({"op": op, "params": params}).encode())
    assert response.status_code == 200, response.text
    return response.json()


def test_linkedge_core_sdk_callbacks_and_errors_match_the_real_package(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    lamp = {"productKey": "lamppk", "deviceName": "lamp-2"}
    assert _probe(gw, "getThingProperties", {**lamp, "payload": ["brightness"]}) == {"data": {"brightness": 70}}
    assert _probe(gw, "callThingService", {**lamp, "payload": {}}) == {"error": "Can't find required parameter \"service\".", "code": None}
    assert _probe(gw, "setThingProperties", lamp) == {"error": "Can't find required parameter \"payload\".", "code": None}
    assert _probe(gw, "getThingProperties", {**lamp, "payload": ["color"]}) == {"error": "no property color", "code": 109002}
    assert _probe(gw, "getThingProperties", {"productKey": "nope", "deviceName": "x", "payload": ["a"]})["code"] == 109000
    lab = [lamp, {"productKey": "pypk", "deviceName": "lamp-1"}]
    assert _probe(gw, "getThingsWithTags", {"payload": [{"key": "room", "value": "lab"}]}) == {"data": lab}
    assert _probe(gw, "getThingsWithTags", {"payload": [{"room": "lab"}]}) == {"data": lab}
    assert _probe(gw, "publish", {"topic": "/lamps/note", "payload": "hi"}) == {"data": None}
    assert _probe(gw, "publish", {"topic": "/lamps/note"})["error"] == "Can't find required parameter \"payload\"."
    invoked = _probe(gw, "invokeFunction", {"functionId": "acs:fc:cn:1:services/demo/functions/lamp-app",
                                              "payload": "{\"brightness\": 40}"})
    assert invoked["data"]["statusCode"] == 200 and invoked["data"]["functionError"] is None
    assert json.loads(invoked["data"]["payload"])["lamps"][0]["deviceName"] == "lamp-1"
    failed = _probe(gw, "invokeFunction", {"functionId": "lamp-app", "payload": "not json"})["data"]
    assert failed["functionError"] == "Handled" and "SyntaxError" in json.loads(failed["payload"])["errorMessage"]
    assert _probe(gw, "invokeFunction", {"functionId": "lamp-app", "invocationType": "RequestResponse"})["error"] == (
        'Incorrect invocationType RequestResponse. It should be "Sync" or "Async".')
    assert isinstance(_probe(gw, "invokeFunction", {"functionId": "lamp-app", "invocationType": "Async", "payload": "{}"})["data"], str)


def test_the_driver_and_app_templates_work_together(node_gateway: GatewayProcess) -> None:
    from edgefc.node.templates import TEMPLATES

    gw = node_gateway
    sources = {name: {f: text.format(name=name) for f, text in TEMPLATES[kind][0].items()}
               for name, kind in (("tdriver", "driver"), ("tapp", "app"))}  # fmt: skip
    functions = [entry(name, **TEMPLATES[kind][1]) for name, kind in (("tdriver", "driver"), ("tapp", "app"))]
    gw.deploy({"version": "templates-1", "functions": functions,
               "devices": [{"product_key": "tpk", "device_name": "d1", "driver": "tdriver"}]}, sources)  # fmt: skip
    assert gw.client is not None
    gw.wait_for(lambda: gw.client.get("/v1/devices/tpk/d1").json()["online"], what="the template driver's device")  # type: ignore[union-attr]
    answer = gw.invoke("tapp", b'{"productKey": "tpk", "deviceName": "d1"}')
    assert answer.status_code == 200 and answer.json() == {"value": 0}, answer.text
