"""Conformance of the Link IoT Edge shims: each test names the public SDK behaviour it mirrors.

The functions under ``linkedge/`` use only the SDKs' public names; they are deployed once, on a real gateway,
as Link IoT Edge would run them: a driver (``HelloThing``, a capitalised name as Link IoT Edge allows) that
registers and reports at import and then polls in a loop at module level that never returns; the core SDK's
HelloWorld, which publishes in such a loop; a driver whose loop dies; applications calling every ``lecoresdk``
name. The SDKs mirrored: aliyun/linkedge-thing-access-sdk-python (``lethingaccesssdk/thing_access.py``,
``leda_python/``) and aliyun/linkedge-core-sdk-python (``lecoresdk/iot.py``, ``fc.py``, ``credential.py``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn

HERE = Path(__file__).parent / "linkedge"
TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "tpk"},
    "properties": [
        {"identifier": "temperature", "accessMode": "rw", "dataType": {"type": "int", "specs": {"min": "0", "max": "100"}}},
        {"identifier": "unit", "accessMode": "r", "dataType": {"type": "text", "specs": {"length": "2"}}},
    ],
    "events": [{"identifier": "alarm", "outputData": [{"identifier": "level", "dataType": {"type": "int"}}]}],
    "services": [
        {"identifier": "reset", "inputData": [{"identifier": "level", "dataType": {"type": "enum", "specs": {"1": "low", "2": "high"}}}]},
        {"identifier": "fail", "inputData": []},
    ],
}  # fmt: skip


def source(name: str) -> dict[str, str]:
    return {"index.py": (HERE / name / "index.py").read_text()}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway running every function of ``linkedge/``; module-scoped because each test only reads or
    puts back what it changes."""
    tmp = tmp_path_factory.mktemp("linkedge")
    gateway = GatewayProcess(tmp / "data").start()
    out = tmp / "recorded.jsonl"
    manifest = {
        "functions": [
            fn("HelloThing", mode="continuous", memory_mb=64, config={"bus": "rs485"}),
            fn("HelloWorld", mode="continuous", memory_mb=64),
            fn("Unplugged", mode="continuous", memory_mb=64),
            fn("ThingApp", memory_mb=64, timeout_s=10,
               env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "id1", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cret"}),
            fn("Invokee", memory_mb=64),
            fn("Recorder", memory_mb=64, env={"OUT": str(out)}),
        ],
        "routes": [
            {"name": "things", "source": "device:/tpk/+", "topic": "#", "target": "function:Recorder"},
            {"name": "plugs", "source": "device:/upk/+", "topic": "/as/mqtt/status/#", "target": "function:Recorder"},
            {"name": "hello", "source": "function:HelloWorld", "topic": "/topic/hello", "target": "function:Recorder"},
        ],
        "devices": [
            {"product_key": "tpk", "device_name": "t1", "driver": "HelloThing", "tags": {"room": "lab", "kind": "thermo"},
             "config": {"tsl": TSL, "tsl_ext_info": {"modbus": {"slave": 3}}, "address": 7}},
            {"product_key": "tpk", "device_name": "t2", "driver": "HelloThing", "tags": {"room": "hall"},
             "config": {"silent": True}},
            {"product_key": "tpk", "device_name": "t3", "driver": "HelloThing", "tags": {"room": "store"}},
            {"product_key": "upk", "device_name": "u1", "driver": "Unplugged"},
        ],
    }  # fmt: skip
    gateway.deploy(manifest, {name: source(name) for name in ("HelloThing", "HelloWorld", "Unplugged", "ThingApp",
                                                               "Invokee", "Recorder")})  # fmt: skip
    gateway.recorded = out  # type: ignore[attr-defined]
    yield gateway
    gateway.stop()


def recorded(gw: GatewayProcess) -> list[dict[str, Any]]:
    path: Path = gw.recorded  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def driver(gw: GatewayProcess, op: str, *args: Any, device: str = "t1") -> Any:
    response = gw.invoke("HelloThing", json.dumps({"op": op, "device": device, "args": args}).encode())
    assert response.status_code == 200, response.text
    return response.json()


def app(gw: GatewayProcess, op: str, params: Any = None) -> Any:
    response = gw.invoke("ThingApp", json.dumps({"op": op, "params": params}).encode())
    assert response.status_code == 200, response.text
    return response.json()


def device(gw: GatewayProcess, name: str) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get(f"/v1/devices/tpk/{name}").json()  # type: ignore[no-any-return]


# ---- module bodies that never return ---------------------------------------------------------------------------


def test_a_module_level_loop_runs_on_and_the_handler_above_it_serves(gw: GatewayProcess) -> None:
    """Link IoT Edge runs a function's module body as it is: HelloThing's polling loop and HelloWorld's
    ``while True`` publisher never return, the deployment still succeeds, and a handler defined above the loop
    serves events."""
    assert gw.status("HelloThing")["state"] == "running" and gw.status("HelloWorld")["state"] == "running"
    assert driver(gw, "results")["registered"] == [True, True, True]
    hellos = gw.wait_for(lambda: [m for m in recorded(gw) if m["topic"] == "/topic/hello"][:2], what="HelloWorld's messages")
    assert hellos[0]["payload"] == "hello world" and hellos[0]["source"] == {"type": "function", "id": "HelloWorld"}
    # HelloWorld defines its handler below the loop: never defined, so an event gets a clear error in time.
    late = gw.invoke("HelloWorld")
    assert late.status_code == 502 and "is not defined yet" in late.json()["error"]["message"]


def test_a_module_body_that_raises_is_a_failed_start_and_restarted(gw: GatewayProcess) -> None:
    """A body that raises after its instance came up is reported with its traceback and the keep-alive starts
    the function again (on Link IoT Edge the function's process is restarted)."""
    status = gw.wait_for(lambda: (s := gw.status("Unplugged"))["restarts"] >= 1 and s, timeout=20, what="a restart")
    assert status["last_exit"]["code"] == 1
    assert gw.client is not None
    logs = gw.client.get("/v1/functions/Unplugged/logs", params={"level": "error"}).json()["entries"]
    assert any("RuntimeError: sensor unplugged" in e["message"] and "Traceback" in e["message"] for e in logs)
    # Its device went offline with it (a status message), and online again with the next instance.
    statuses = gw.wait_for(lambda: (s := [json.loads(m["payload"])["status"] for m in recorded(gw)
                                          if m["topic"] == "/as/mqtt/status/upk/u1"]) and len(s) >= 3 and s,
                           what="u1's status messages")  # fmt: skip
    assert statuses[:3] == ["online", "offline", "online"]


def test_the_first_report_made_at_import_is_routed(gw: GatewayProcess) -> None:
    """Reports a driver makes while its module is imported (during the deploy) reach the routes: the device's
    first reading (20, reported at import; the loop reports 21 and up) arrives, after its online status."""
    messages = gw.wait_for(lambda: (r := [m for m in recorded(gw) if m["source"]["id"] == "/tpk/t1"]) and len(r) >= 3 and r,
                           what="t1's messages")  # fmt: skip
    assert messages[0]["topic"] == "/as/mqtt/status/tpk/t1"
    assert json.loads(messages[0]["payload"])["status"] == "online"
    assert messages[1]["topic"] == "/sys/tpk/t1/thing/event/property/post"
    assert json.loads(messages[1]["payload"])["temperature"]["value"] == 20


# ---- lethingaccesssdk ------------------------------------------------------------------------------------------


def test_config_get_thing_infos_get_driver_info_get_config_and_env(gw: GatewayProcess) -> None:
    """``Config().getThingInfos()`` lists ``{"productKey", "deviceName", "custom"}`` with ``custom`` as JSON text;
    ``getDriverInfo()`` is the driver's config; ``getConfig()`` is ``{"config", "deviceList"}`` as JSON text;
    the SDK sets ``FC_DRIVER_CONFIG`` to ``{"deviceList"}``; the runtime sets ``FUNCTION_ID``."""
    results = driver(gw, "results")
    infos = results["infos"]
    assert [(i["productKey"], i["deviceName"]) for i in infos] == [("tpk", "t1"), ("tpk", "t2"), ("tpk", "t3")]
    assert json.loads(infos[0]["custom"]) == {"address": 7} and json.loads(infos[1]["custom"]) == {"silent": True}
    assert "custom" not in infos[2]
    assert results["driver_info"] == {"bus": "rs485"}
    assert results["config"] == {"config": {"bus": "rs485"}, "deviceList": infos}
    assert results["env"] == {"FUNCTION_ID": "HelloThing", "FC_DRIVER_CONFIG": {"deviceList": infos}}


def test_thing_access_client_before_registration_and_with_a_bad_info_only_logs(gw: GatewayProcess) -> None:
    """Before ``registerAndOnline`` the client's calls log an error and return; a client made from a bad thing
    info logs and its ``registerAndOnline`` returns None; a callback that is not a ThingCallback raises
    ``LedaCallBackException`` (``value`` 100000)."""
    results = driver(gw, "results")
    assert results["early_device"] is None
    assert results["bad_info_register"] is None and results["no_info_register"] is None
    assert results["bad_callback"] == ["LedaCallBackException", 100000, "[LedaCallBack] bus callback object is invalid"]
    assert gw.client is not None
    logs = " ".join(e["message"] for e in gw.client.get("/v1/functions/HelloThing/logs", params={"level": "error"}).json()["entries"])
    assert "please register and online firstly" in logs and "product key or device name is None" in logs


def test_register_and_online_returns_the_device(gw: GatewayProcess) -> None:
    """``registerAndOnline(callback)`` returns the registered device (truthy), and registering it again returns
    the same device, online."""
    assert driver(gw, "results")["registered"] == [True, True, True]
    assert driver(gw, "registerAndOnline") == {"truthy": True, "same": True}
    assert device(gw, "t1")["online"] and device(gw, "t2")["online"]


def test_get_tsl_and_tsl_ext_info(gw: GatewayProcess) -> None:
    """``getTsl()`` returns the model's text; ``getTslConfig()``/``getTslExtInfo()`` its extension info; each is
    None when the device has none."""
    assert json.loads(driver(gw, "getTsl")["answer"]) == TSL
    assert json.loads(driver(gw, "getTslExtInfo")["answer"]) == {"modbus": {"slave": 3}}
    assert json.loads(driver(gw, "getTslConfig")["answer"]) == {"modbus": {"slave": 3}}
    assert driver(gw, "getTsl", device="t2") == {"answer": None}
    assert driver(gw, "getTslExtInfo", device="t2") == {"answer": None}


def test_report_properties_and_events_type_errors_and_the_thing_model(gw: GatewayProcess) -> None:
    """``reportProperties``/``reportEvent`` with arguments of the wrong type raise ``LedaReportPropertyException``
    / ``LedaReportEventException``; a report the thing model refuses (wrong type) is dropped and logged with
    code 109008."""
    bad = driver(gw, "reportProperties", "not a dict")
    assert bad["error"] == "LedaReportPropertyException" and bad["value"] == 100000
    assert driver(gw, "reportEvent", "alarm", "not a dict")["error"] == "LedaReportEventException"
    assert driver(gw, "reportEvent", "alarm", {"level": 2}) == {"answer": None}
    assert driver(gw, "reportProperties", {"temperature": "hot"}) == {"answer": None}
    assert gw.client is not None
    logs = gw.wait_for(lambda: [e for e in gw.client.get("/v1/functions/HelloThing/logs", params={"q": "109008"}).json()["entries"]],  # type: ignore[union-attr]
                       what="the refused report logged")  # fmt: skip
    assert "temperature" in logs[0]["message"]
    events = gw.wait_for(lambda: [m for m in recorded(gw) if m["topic"] == "/sys/tpk/t1/thing/event/alarm/post"], what="the event")
    assert json.loads(events[0]["payload"])["params"]["value"] == {"level": 2}


def test_offline_online_cleanup_and_the_status_messages(gw: GatewayProcess) -> None:
    """``offline()`` takes the device offline (reports then raise ``LedaReportPropertyException``), ``online()``
    brings it back, ``cleanup()`` is ``offline()``; each change is a status message routes can match."""
    assert driver(gw, "offline") == {"answer": None} and not device(gw, "t1")["online"]
    refused = driver(gw, "reportProperties", {"temperature": 30})
    assert refused["error"] == "LedaReportPropertyException" and "unless online" in refused["msg"]
    assert driver(gw, "online") == {"answer": None} and device(gw, "t1")["online"]
    assert driver(gw, "cleanup") == {"answer": None} and not device(gw, "t1")["online"]
    assert driver(gw, "online") == {"answer": None} and device(gw, "t1")["online"]
    statuses = gw.wait_for(lambda: (s := [json.loads(m["payload"])["status"] for m in recorded(gw)
                                          if m["topic"] == "/as/mqtt/status/tpk/t1"]) and len(s) >= 5 and s,
                           what="five status messages")  # fmt: skip
    assert statuses[:5] == ["online", "offline", "online", "offline", "online"]


def test_unregister_twice_raises_and_online_reconnects(gw: GatewayProcess) -> None:
    """``unregister()`` removes the device; a second one raises ``LedaRPCMethodException``; ``online()`` after it
    connects the device again."""
    assert driver(gw, "unregister") == {"answer": None}
    assert device(gw, "t1")["state"] == "unregistered"
    again = driver(gw, "unregister")
    assert again["error"] == "LedaRPCMethodException" and again["value"] == 100000
    assert driver(gw, "online") == {"answer": None} and device(gw, "t1")["online"]


# ---- lecoresdk.IoTData -----------------------------------------------------------------------------------------


def test_get_thing_properties_and_callback_codes(gw: GatewayProcess) -> None:
    """``getThingProperties`` returns the driver's dict; a callback's non-zero code reaches the caller as 100000,
    a non-tuple answer or a TypeError/ValueError in the callback as 100001, an un-overridden callback as 100000;
    failures are ``{"errorType", "errorMessage"}`` dicts, bad params the invalid-parameter code."""
    t1 = {"productKey": "tpk", "deviceName": "t1"}
    got = app(gw, "getThingProperties", {**t1, "payload": ["temperature"]})["answer"]
    assert set(got) == {"temperature", "unit"} and 0 <= got["temperature"] <= 100
    t3 = {"productKey": "tpk", "deviceName": "t3"}  # no thing model: what the callback answers is what counts
    for key, code in (("broken", 100000), ("weird", 100001), ("raising", 100001)):
        answer = app(gw, "getThingProperties", {**t3, "payload": [key]})["answer"]
        assert answer["errorType"] == code, (key, answer)
    assert app(gw, "getThingProperties", {**t1, "payload": ["nope"]})["answer"]["errorType"] == 109002  # not in the model
    assert app(gw, "getThingProperties", {"productKey": "tpk", "deviceName": "t2", "payload": ["a"]})["answer"]["errorType"] == 100000
    assert app(gw, "getThingProperties", {"productKey": "tpk", "deviceName": "nobody", "payload": []})["answer"]["errorType"] == 109000
    assert app(gw, "getThingProperties", {**t1, "payload": "temperature"})["answer"] == 100001


def test_set_thing_properties_checks_the_thing_model(gw: GatewayProcess) -> None:
    """``setThingProperties`` returns ``{}`` once the driver set them; the thing model's type (109008), range
    (100007) and access mode (109003) refuse a set before it reaches the driver."""
    t1 = {"productKey": "tpk", "deviceName": "t1"}
    assert app(gw, "setThingProperties", {**t1, "payload": {"temperature": 25}})["answer"] == {}
    assert app(gw, "getThingProperties", {**t1, "payload": ["temperature"]})["answer"]["temperature"] in range(20, 31)
    for payload, code in (({"temperature": "hot"}, 109008), ({"temperature": 1000}, 100007), ({"temperature": 2.5}, 109008),
                          ({"unit": "F"}, 109003), ({"colour": 1}, 109002)):  # fmt: skip
        assert app(gw, "setThingProperties", {**t1, "payload": payload})["answer"]["errorType"] == code, payload
    assert app(gw, "setThingProperties", {**t1, "payload": ["temperature"]})["answer"] == 100001


def test_call_thing_service_with_get_set_and_services(gw: GatewayProcess) -> None:
    """``callThingService`` runs a service and returns its output; the services ``get`` and ``set`` read and write
    properties; an unknown service is 109005, bad inputs 109006, a refusing callback 100000."""
    t1 = {"productKey": "tpk", "deviceName": "t1"}
    assert app(gw, "callThingService", {**t1, "service": "reset", "payload": {"level": 2}})["answer"] == {"done": True, "level": 2}
    assert app(gw, "callThingService", {**t1, "service": "set", "payload": {"temperature": 40}})["answer"] == {}
    assert app(gw, "callThingService", {**t1, "service": "get", "payload": ["temperature"]})["answer"]["temperature"] >= 20
    assert app(gw, "callThingService", {**t1, "service": "reboot", "payload": {}})["answer"]["errorType"] == 109005
    assert app(gw, "callThingService", {**t1, "service": "reset", "payload": {"level": 7}})["answer"]["errorType"] == 109006
    assert app(gw, "callThingService", {**t1, "service": "fail", "payload": {}})["answer"]["errorType"] == 100000
    assert app(gw, "callThingService", {**t1, "service": "reset"})["answer"] == 100001  # no payload


def test_get_things_with_tags(gw: GatewayProcess) -> None:
    """``getThingsWithTags({"payload": [{tagKey: tagValue}, ...]})`` returns ``[{"productKey", "deviceName"}]`` of
    the devices carrying every given tag."""
    assert app(gw, "getThingsWithTags", {"payload": [{"room": "lab"}]})["answer"] == [{"productKey": "tpk", "deviceName": "t1"}]
    assert app(gw, "getThingsWithTags", {"payload": [{"room": "lab"}, {"kind": "thermo"}]})["answer"] == [
        {"productKey": "tpk", "deviceName": "t1"}]  # fmt: skip
    assert app(gw, "getThingsWithTags", {"payload": [{"room": "lab", "kind": "other"}]})["answer"] == []
    assert len(app(gw, "getThingsWithTags", {"payload": []})["answer"]) == 4
    assert app(gw, "getThingsWithTags", {"payload": {"room": "lab"}})["answer"] == 100001


def test_publish_returns_zero_or_a_status(gw: GatewayProcess) -> None:
    """``publish({"topic", "payload"})`` returns 0; a topic the router refuses gives a status, missing params the
    invalid-parameter code; nothing raises."""
    assert app(gw, "publish", {"topic": "/app/out", "payload": "x"})["answer"] == 0
    assert app(gw, "publish", {"topic": "/app/#", "payload": "x"})["answer"] == 400
    assert app(gw, "publish", {"topic": "/app/out"})["answer"] == 100001
    assert app(gw, "publish", {"topic": "/app/out", "payload": {"not": "text"}})["answer"] == 100001


def test_credential_provider_chain(gw: GatewayProcess) -> None:
    """``CredentialProviderChain()`` is a singleton whose ``get_credential()`` gives
    ``{"accessKeyId", "accessKeySecret", "securityToken"}``."""
    got = app(gw, "get_credential")
    assert got == {"answer": {"accessKeyId": "id1", "accessKeySecret": "s3cret", "securityToken": ""}, "singleton": True}


# ---- lecoresdk.Client ------------------------------------------------------------------------------------------


def test_invoke_function_sync_async_and_invoker_context(gw: GatewayProcess) -> None:
    """``invoke_function``: ``Sync`` (the default) returns ``{"statusCode": 200, "functionError": "", "payload":
    <base64>}``; ``serviceName`` + ``functionName`` name the function too; ``invokerContext`` reaches the callee's
    context; ``Async`` returns ``"success"``; an unknown ``invocationType`` the invalid-parameter code."""
    context = base64.b64encode(json.dumps({"custom": {"data": "customData"}}).encode()).decode()
    answer = app(gw, "invoke_function", {"functionId": "svc/Invokee", "invocationType": "Sync", "payload": "hi",
                                         "invokerContext": context})["answer"]  # fmt: skip
    assert answer["statusCode"] == 200 and answer["functionError"] == ""
    assert json.loads(base64.b64decode(answer["payload"])) == {"event": "hi", "invoker_context": {"custom": {"data": "customData"}}}
    named = app(gw, "invoke_function", {"serviceName": "svc", "functionName": "Invokee", "payload": "by name"})["answer"]
    assert json.loads(base64.b64decode(named["payload"]))["event"] == "by name"
    binary = app(gw, "invoke_function", {"functionId": "Invokee", "payload_b64": base64.b64encode(b"bytes").decode()})["answer"]
    assert json.loads(base64.b64decode(binary["payload"]))["event"] == "bytes"
    assert app(gw, "invoke_function", {"functionId": "Invokee", "invocationType": "Async", "payload": "later"})["answer"] == "success"
    assert app(gw, "invoke_function", {"functionId": "Invokee", "invocationType": "RequestResponse"})["answer"] == 100001
    assert app(gw, "invoke_function", {"payload": "nobody to call"})["answer"] == 100001


def test_invoke_function_failures(gw: GatewayProcess) -> None:
    """A callee that raises gives status 200 with ``functionError`` set and the error in the payload; a function
    that does not exist its status (404)."""
    failed = app(gw, "invoke_function", {"functionId": "Invokee", "payload": "fail"})["answer"]
    assert failed["statusCode"] == 200 and failed["functionError"] == "HandledInvocationError"
    assert "KeyError" in json.loads(base64.b64decode(failed["payload"]))["errorMessage"]
    missing = app(gw, "invoke_function", {"functionId": "nobody"})["answer"]
    assert missing["statusCode"] == 404
