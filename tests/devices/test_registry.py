"""The device registry: state kept across deployments, ownership checks, tags, a driver going away."""

from __future__ import annotations

import pytest

from edgefc.config.manifest import DeviceSpec
from edgefc.devices.registry import DeviceState, Registry
from edgefc.errors import DeviceError, NotFound


def spec(dn: str, driver: str = "drv", **settings: object) -> DeviceSpec:
    return DeviceSpec.model_validate({"product_key": "pk", "device_name": dn, "driver": driver, **settings})


def test_apply_keeps_what_a_device_reported_while_its_driver_stays() -> None:
    registry = Registry()
    registry.apply([spec("a"), spec("b")])
    first = registry.get("pk", "a")
    first.state, first.properties = DeviceState.ONLINE, {"t": {"value": 1, "time": 5}}
    registry.get("pk", "b").state = DeviceState.ONLINE

    previous = registry.apply([spec("a", tags={"room": "lab"}), spec("b", driver="other"), spec("c")])
    kept = registry.get("pk", "a")
    assert kept.online and kept.spec.tags == {"room": "lab"} and kept.properties == {"t": {"value": 1, "time": 5}}
    assert registry.get("pk", "b").state is DeviceState.UNREGISTERED  # moved to another driver: starts over
    assert registry.get("pk", "c").state is DeviceState.UNREGISTERED
    kept.properties = {"t": {"value": 2, "time": 6}}  # reported while the new deployment was starting

    registry.restore(previous)  # that deployment failed
    assert [d.spec.device_name for d in registry.all()] == ["a", "b"] and registry.get("pk", "b").online
    assert registry.get("pk", "a").spec.tags == {} and registry.get("pk", "a").properties["t"]["value"] == 2


def test_owned_and_registered_check_the_driver_and_the_state() -> None:
    registry = Registry()
    registry.apply([spec("a"), spec("b", driver="other")])
    with pytest.raises(NotFound, match="no device /pk/zz"):
        registry.get("pk", "zz")
    with pytest.raises(NotFound, match="not assigned to driver 'drv'"):
        registry.owned("drv", "pk", "b")
    with pytest.raises(DeviceError) as unregistered:
        registry.registered("drv", "pk", "a")
    assert unregistered.value.code == 109000 and unregistered.value.to_dict()["code"] == 109000
    registry.get("pk", "a").state = DeviceState.OFFLINE
    with pytest.raises(DeviceError) as offline:
        registry.registered("drv", "pk", "a")
    assert offline.value.code == 109001 and offline.value.http_status == 422
    registry.get("pk", "a").state = DeviceState.ONLINE
    assert registry.registered("drv", "pk", "a").path == "/pk/a"


def test_find_by_tags_and_a_driver_going_away() -> None:
    registry = Registry()
    registry.apply([spec("a", tags={"room": "lab", "floor": "1"}), spec("b", tags={"room": "hall"}), spec("c", driver="x")])
    assert [d.spec.device_name for d in registry.find({"room": "lab"})] == ["a"]
    assert [d.spec.device_name for d in registry.find({"room": "lab", "floor": "2"})] == []
    assert len(registry.find({})) == 3
    for device in registry.all():
        device.state = DeviceState.ONLINE
    gone = registry.driver_gone("drv")
    assert sorted(d.spec.device_name for d in gone) == ["a", "b"]
    assert [d.online for d in registry.all()] == [False, False, True]
    entry = registry.get("pk", "a").to_dict()
    assert entry["online"] is False and entry["state"] == "unregistered" and entry["driver"] == "drv"
    assert set(entry) >= {"product_key", "device_name", "driver", "online", "tags", "last_seen", "properties"}
