"""The Link IoT Edge shims' shapes that need no gateway: config parsing, callback answers, function ids."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgefc

COMPAT = Path(edgefc.__file__).parent / "compat"


@pytest.fixture(autouse=True)
def shims_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The compat folder at the end of sys.path, as in a worker; the shims are forgotten afterwards."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(COMPAT)])
    yield
    for name in ("lethingaccesssdk", "lecoresdk"):
        sys.modules.pop(name, None)


def test_config_parses_the_driver_config_text() -> None:
    import lethingaccesssdk

    text = json.dumps({"config": {"bus": 1}, "deviceList": [{"productKey": "pk", "deviceName": "d", "custom": {"x": 1}}]})
    config = lethingaccesssdk.Config(text)
    assert config.getThingInfos() == [{"productKey": "pk", "deviceName": "d", "custom": {"x": 1}}]
    assert config.getDriverInfo() == {"bus": 1}
    assert lethingaccesssdk.Config({"deviceList": []}).getThingInfos() == []


def test_callback_answers_become_values_or_refusals() -> None:
    import lethingaccesssdk
    from lethingaccesssdk import _unpack

    from edgefc.sdk.things import DeviceError

    assert _unpack((0, {"a": 1}), "getProperties") == {"a": 1}
    assert _unpack([0, None], "setProperties") == {}
    with pytest.raises(DeviceError) as refused:
        _unpack((100001, {"message": "read-only"}), "setProperties")
    assert (refused.value.code, refused.value.message) == (100001, "read-only")
    with pytest.raises(DeviceError, match="callService returned code 7"):
        _unpack((7, {}), "callService")
    with pytest.raises(TypeError, match=r"must return \(code, dict\)"):
        _unpack({"a": 1}, "getProperties")
    base = lethingaccesssdk.ThingCallback()
    assert base.getProperties(["a"])[0] == 109002 and base.setProperties({})[0] == 109003
    assert base.callService("x", {})[0] == 109005


def test_thing_access_client_needs_a_thing_info() -> None:
    import lethingaccesssdk

    with pytest.raises(lethingaccesssdk.ThingError) as bad:
        lethingaccesssdk.ThingAccessClient({"productKey": "pk"})
    assert bad.value.code == 100001
    client = lethingaccesssdk.ThingAccessClient('{"productKey": "pk", "deviceName": "d"}')
    assert client._client.product_key == "pk" and client._client.device_name == "d"


def test_function_ids_name_functions() -> None:
    from lecoresdk import _function_name

    assert _function_name("greeter") == "greeter"
    assert _function_name("svc/greeter") == "greeter"
    assert _function_name("acs:fc:cn-shanghai:123:services/svc/functions/greeter") == "greeter"


def test_outside_a_function_the_sdk_says_so() -> None:
    import lecoresdk

    with pytest.raises(RuntimeError, match="only inside a function"):
        lecoresdk.IoTData().getThingProperties({"productKey": "pk", "deviceName": "d", "payload": []})
