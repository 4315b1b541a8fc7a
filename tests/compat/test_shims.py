"""The shims outside a gateway: what the SDKs answer before they talk to anything (params, logging, exceptions).

Each test names the published SDK behaviour it mirrors; the round trips are in ``test_conformance.py``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgefc

COMPAT = Path(edgefc.__file__).parent / "compat"
SHIMS = ("lethingaccesssdk", "lecoresdk", "leda_python")


@pytest.fixture(autouse=True)
def shims_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The compat folder at the end of sys.path, as in a worker, outside any function; forgotten afterwards."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(COMPAT)])
    monkeypatch.delenv("FUNCTION_ID", raising=False)
    monkeypatch.setenv("FC_DRIVER_CONFIG", "unset")
    for key in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(key, raising=False)
    yield
    for name in list(sys.modules):
        if name.split(".")[0] in SHIMS:
            del sys.modules[name]


def test_outside_a_driver_the_config_is_empty_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Without a driver (no FUNCTION_ID) the SDK logs "can't get driver name", lists no things, and still sets
    FC_DRIVER_CONFIG; Config's argument is kept but not used."""
    with caplog.at_level(logging.ERROR):
        import lethingaccesssdk
    assert "can't get driver name" in caplog.text
    assert lethingaccesssdk.Config().getThingInfos() == [] and lethingaccesssdk.Config().getDriverInfo() is None
    assert lethingaccesssdk.Config('{"deviceList": [{"productKey": "x"}]}').getThingInfos() == []
    assert json.loads(lethingaccesssdk.getConfig()) == {"deviceList": []}
    assert json.loads(os.environ["FC_DRIVER_CONFIG"]) == {"deviceList": []}


def test_a_client_with_a_bad_thing_info_logs_and_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    """ThingAccessClient(123) and ThingAccessClient({"productKey"}) log; their registerAndOnline returns None;
    calls before registration log "register and online firstly"; getTsl without a device is None."""
    import lethingaccesssdk

    class Cb(lethingaccesssdk.ThingCallback):
        pass

    with caplog.at_level(logging.ERROR):
        for info in (123, {"productKey": "pk"}, None):
            client = lethingaccesssdk.ThingAccessClient(info)
            assert client.registerAndOnline(Cb()) is None and client.registerAndonline(Cb()) is None
            client.reportProperties({"a": 1})
            client.reportEvent("e", {})
            client.online()
            client.offline()
            client.unregister()
            client.cleanup()
            assert client.getTsl() is None and client.getTslExtInfo() is None
    assert "parameter is error" in caplog.text and "config is error" in caplog.text
    assert "product key or device name is None" in caplog.text and "please register and online firstly" in caplog.text


def test_leda_exceptions_carry_value_and_msg() -> None:
    """LedaException(msg, value=100000) has .value and .msg and reads "Err: <msg> ErrCode: <value>"; its
    subclasses prefix the message with their kind; leda.BaseDeviceCallback's methods raise LedaCallBackException."""
    from leda_python import leda, ledaException

    exc = ledaException.LedaException("boom")
    assert (exc.value, exc.msg, str(exc)) == (100000, "boom", "Err: boom ErrCode: 100000")
    sub = ledaException.LedaReportPropertyException("offline", ledaException.LEDA_ERROR_TIMEOUT)
    assert isinstance(sub, ledaException.LedaException) and (sub.value, sub.msg) == (100006, "[LedaReportProperty] offline")
    assert (ledaException.LEDA_ERROR_INVAILD_PARAM, ledaException.LEDA_ERROR_NOT_SUPPORT) == (100001, 100008)
    with pytest.raises(ledaException.LedaCallBackException):
        leda.BaseDeviceCallback().getProperties([])
    import lethingaccesssdk

    assert isinstance(lethingaccesssdk.ThingCallback(), leda.BaseDeviceCallback)


def test_register_with_a_callback_of_the_wrong_kind_raises() -> None:
    """registerAndOnline(callback) with a callback that is not a ThingCallback raises LedaCallBackException."""
    import lethingaccesssdk
    from leda_python.ledaException import LedaCallBackException

    with pytest.raises(LedaCallBackException) as raised:
        lethingaccesssdk.ThingAccessClient({"productKey": "pk", "deviceName": "dn"}).registerAndOnline(object())
    assert raised.value.value == 100000


def test_core_sdk_params_are_checked_before_anything_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    """IoTData and Client return the invalid-parameter code (never raise) for params of the wrong shape:
    publish without topic or payload, getThingProperties with a payload that is not a list, setThingProperties
    with one that is not a dict, callThingService without service or payload, getThingsWithTags with a payload
    that is not a list; invoke_function with an unknown invocationType, no function or a payload of another type."""
    import lecoresdk

    it, fc = lecoresdk.IoTData(), lecoresdk.Client()
    thing = {"productKey": "pk", "deviceName": "dn"}
    for answer in (it.publish({"topic": "/a"}), it.publish({"payload": "x"}), it.publish("nope"),
                   it.getThingProperties({**thing, "payload": "a"}), it.setThingProperties({**thing, "payload": ["a"]}),
                   it.callThingService({**thing, "payload": {}}), it.callThingService({**thing, "service": "s"}),
                   it.callThingService({**thing, "service": "go", "payload": ["not", "a", "dict"]}),
                   it.getThingsWithTags({"payload": {"a": "b"}}), it.getThingsWithTags({"payload": ["a"]})):  # fmt: skip
        assert answer == 100001
    with caplog.at_level(logging.ERROR):
        for params in ({"functionId": "f", "invocationType": "Event"}, {"functionId": "f", "invocationType": "sync"},
                       {"payload": "x"}, {"serviceName": "s"}, {"functionId": 5}, {"functionId": "f", "payload": 5}):  # fmt: skip
            assert fc.invoke_function(params) == 100001
    assert "invocationType must be 'Sync' or 'Async'" in caplog.text


def test_credential_provider_chain_is_a_singleton_and_logs_without_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """CredentialProviderChain() is one object; get_credential() logs and returns None when there are none."""
    import lecoresdk

    assert lecoresdk.CredentialProviderChain() is lecoresdk.CredentialProviderChain()
    with caplog.at_level(logging.ERROR):
        assert lecoresdk.CredentialProviderChain().get_credential() is None
    assert "get credential fail" in caplog.text


def test_function_ids_and_invoker_contexts() -> None:
    """functionId may be a name, service/name or an ARN; invokerContext may be a dict, JSON or base64 JSON."""
    from lecoresdk.fc import function_name, invoker_context

    assert {function_name(i) for i in ("f", "svc/f", "acs:fc:cn-shanghai:123:services/svc/functions/f")} == {"f"}
    assert invoker_context({"a": 1}) == {"a": 1} and invoker_context('{"a": 1}') == {"a": 1}
    assert invoker_context("eyJhIjogMX0=") == {"a": 1} and invoker_context("plain") == "plain"
