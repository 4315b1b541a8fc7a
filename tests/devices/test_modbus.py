"""The Modbus TCP example driver against pymodbus's own server on loopback, through a real gateway."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn

MODBUS = Path(__file__).resolve().parents[2] / "examples" / "modbus"


def _simulator_module() -> Any:
    spec = importlib.util.spec_from_file_location("modbus_simulator", MODBUS / "simulator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def simulator() -> Iterator[Any]:
    sim = _simulator_module().Simulator(units=(1, 2), registers=[215, 200, 0, 0xFFF6] + [0] * 12).start()
    yield sim
    sim.stop()


def boiler(name: str, port: int, unit: int) -> dict[str, Any]:
    properties = {"temperature": {"register": 0, "scale": 0.1}, "setpoint": {"register": 1, "scale": 0.1, "writable": True},
                  "pump": {"register": 2, "writable": True}, "offset": {"register": 3, "signed": True}}  # fmt: skip
    return {"product_key": "boiler", "device_name": name, "driver": "modbus-driver",
            "config": {"host": "127.0.0.1", "port": port, "unit": unit, "properties": properties}}  # fmt: skip


def test_modbus_driver_reports_registers_and_writes_sets(gateway: GatewayProcess, simulator: Any) -> None:
    manifest = {
        "functions": [fn("modbus-driver", mode="continuous", initializer="index.init", memory_mb=96, config={"poll_s": 0.2})],
        "devices": [boiler("b1", simulator.port, 1), boiler("b2", simulator.port, 2)],
    }
    code = {"index.py": (MODBUS / "functions" / "modbus-driver" / "index.py").read_text()}
    gateway.deploy(manifest, {"modbus-driver": code})
    assert gateway.client is not None

    def properties(name: str) -> dict[str, Any]:
        found = gateway.client.get(f"/v1/devices/boiler/{name}").json() if gateway.client else {}
        return {k: v["value"] for k, v in found["properties"].items()}

    first = gateway.wait_for(lambda: properties("b1") or None, timeout=10, what="a report of b1")
    assert first == {"temperature": 21.5, "setpoint": 20.0, "pump": 0, "offset": -10}
    # The device changes on its own: the next poll reports it.
    simulator.set_registers([230], unit=1)
    gateway.wait_for(lambda: properties("b1")["temperature"] == 23.0, timeout=10, what="the new temperature")

    # A set through the API writes the device's register (read back over Modbus) and is reported.
    answer = gateway.client.post("/v1/devices/boiler/b2/properties", json={"setpoint": 23.5, "pump": 1})
    assert answer.status_code == 200 and answer.json() == {"setpoint": 23.5, "pump": 1}, answer.text
    assert simulator.registers(unit=2, address=1, count=2) == [235, 1]
    assert simulator.registers(unit=1, address=1, count=2) == [200, 0]  # the other unit is untouched
    assert properties("b2")["setpoint"] == 23.5
    fresh = gateway.cli("devices", "get", "boiler", "b2", "setpoint", "temperature")
    assert fresh.returncode == 0 and json.loads(fresh.stdout) == {"setpoint": 23.5, "temperature": 21.5}

    for body, code_, text in (({"temperature": 1}, 109003, "temperature is read-only"),
                              ({"valve": 1}, 109002, "has no property 'valve'"),
                              ({"pump": 70000}, 100001, "does not fit a register")):  # fmt: skip
        refused = gateway.client.post("/v1/devices/boiler/b1/properties", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == code_ and text in refused.json()["error"]["message"]
    assert simulator.registers(unit=1, address=0, count=3) == [230, 200, 0]


def test_a_device_that_stops_answering_goes_offline_and_comes_back(gateway: GatewayProcess) -> None:
    module = _simulator_module()
    sim = module.Simulator(registers=[100] * 4).start()
    port = sim.port
    manifest = {
        "functions": [fn("modbus-driver", mode="continuous", initializer="index.init", memory_mb=96, config={"poll_s": 0.2})],
        "devices": [boiler("b1", port, 1)],
    }
    code = {"index.py": (MODBUS / "functions" / "modbus-driver" / "index.py").read_text()}
    try:
        gateway.deploy(manifest, {"modbus-driver": code})
        assert gateway.client is not None

        def state() -> str:
            return gateway.client.get("/v1/devices/boiler/b1").json()["state"] if gateway.client else ""

        gateway.wait_for(lambda: gateway.client and gateway.client.get("/v1/devices/boiler/b1").json()["properties"],
                         timeout=10, what="a first report")  # fmt: skip
        sim.stop()
        gateway.wait_for(lambda: state() == "offline", timeout=15, what="the device offline")
        assert gateway.client.get("/v1/devices/boiler/b1/properties").status_code == 503
        sim = module.Simulator(port=port, registers=[300] * 4).start()
        gateway.wait_for(lambda: state() == "online", timeout=15, what="the device online again")
        gateway.wait_for(lambda: gateway.client and gateway.client.get("/v1/devices/boiler/b1/properties?keys=temperature").json()
                         == {"temperature": 30.0}, timeout=10, what="fresh values")  # fmt: skip
    finally:
        sim.stop()
