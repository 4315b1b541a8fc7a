"""The thing model's data types and the codes Link IoT Edge answers a value that does not fit with."""

from __future__ import annotations

from typing import Any

import pytest

from edgefc.devices.tsl import ThingModel, check_value
from edgefc.errors import DeviceError

TYPE, RANGE = 109008, 100007
STRUCT = {"type": "struct", "specs": [{"identifier": "x", "dataType": {"type": "float", "specs": {"min": "-1.5", "max": "1.5"}}},
                                      {"identifier": "name", "dataType": {"type": "text", "specs": {"length": "3"}}}]}  # fmt: skip
ARRAY = {"type": "array", "specs": {"size": "2", "item": {"type": "int", "specs": {"min": "0", "max": "9"}}}}

CASES: list[tuple[dict[str, Any], Any, int | None]] = [
    ({"type": "int", "specs": {"min": "0", "max": "10"}}, 10, None),
    ({"type": "int", "specs": {"min": "0", "max": "10"}}, 11, RANGE),
    ({"type": "int", "specs": {"min": "0", "max": "10"}}, -1, RANGE),
    ({"type": "int"}, 2.5, TYPE),
    ({"type": "int"}, 3.0, None),
    ({"type": "int"}, True, TYPE),
    ({"type": "int"}, "3", TYPE),
    ({"type": "int"}, 2**31, RANGE),
    ({"type": "float", "specs": {"min": "-1.5", "max": "1.5"}}, 1.5, None),
    ({"type": "double", "specs": {"min": "-1.5", "max": "1.5"}}, 1.6, RANGE),
    ({"type": "double"}, float("nan"), TYPE),
    ({"type": "bool"}, 1, None),
    ({"type": "bool"}, True, None),
    ({"type": "bool"}, 2, TYPE),
    ({"type": "bool"}, "1", TYPE),
    ({"type": "enum", "specs": {"0": "off", "1": "on"}}, 1, None),
    ({"type": "enum", "specs": {"0": "off", "1": "on"}}, 2, RANGE),
    ({"type": "enum", "specs": {"0": "off", "1": "on"}}, "on", TYPE),
    ({"type": "text", "specs": {"length": "3"}}, "abc", None),
    ({"type": "text", "specs": {"length": "3"}}, "abcd", RANGE),
    ({"type": "text"}, 5, TYPE),
    ({"type": "date"}, 1700000000000, None),
    ({"type": "date"}, "1700000000000", None),
    ({"type": "date"}, "yesterday", TYPE),
    ({"type": "date"}, -5, TYPE),
    (STRUCT, {"x": 1.0, "name": "ab"}, None),
    (STRUCT, {"x": 2.0}, RANGE),
    (STRUCT, {"name": "abcd"}, RANGE),
    (STRUCT, {"y": 1}, TYPE),
    (STRUCT, [1], TYPE),
    (ARRAY, [1, 9], None),
    (ARRAY, [1, 2, 3], RANGE),
    (ARRAY, [1, 10], RANGE),
    (ARRAY, [1, "2"], TYPE),
    (ARRAY, {"a": 1}, TYPE),
]  # fmt: skip


@pytest.mark.parametrize(("data_type", "value", "code"), CASES)
def test_check_value(data_type: dict[str, Any], value: Any, code: int | None) -> None:
    if code is None:
        check_value("p", data_type, value)
    else:
        with pytest.raises(DeviceError) as refused:
            check_value("p", data_type, value)
        assert refused.value.code == code and refused.value.message.startswith("p")


def test_the_model_knows_its_properties_access_modes_events_and_services() -> None:
    model = ThingModel.of({"tsl": {
        "properties": [{"identifier": "t", "accessMode": "r", "dataType": {"type": "int"}},
                       {"identifier": "w", "accessMode": "w", "dataType": {"type": "int"}}],
        "events": [{"identifier": "alarm", "outputData": [{"identifier": "level", "dataType": {"type": "int"}}]}],
        "services": [{"identifier": "go", "inputData": [{"identifier": "speed", "dataType": {"type": "int", "specs": {"max": "5"}}}]}],
    }})  # fmt: skip
    assert model is not None
    model.check_report({"t": 1, "w": 2})
    for call, code in ((lambda: model.check_report({"nope": 1}), 109002), (lambda: model.check_set({"t": 1}), 109003),
                       (lambda: model.check_get(["w"]), 109004), (lambda: model.check_service("stop", {}), 109005),
                       (lambda: model.check_service("go", {"speed": 9}), 109006),
                       (lambda: model.check_service("go", {"gear": 1}), 109006),
                       (lambda: model.check_event("alarm", {"level": "high"}), 109008)):  # fmt: skip
        with pytest.raises(DeviceError) as refused:
            call()
        assert refused.value.code == code
    model.check_event("unknown-event", {"anything": 1})
    assert ThingModel.of({"tsl": "not json"}) is None and ThingModel.of(None) is None and ThingModel.of({"x": 1}) is None
    assert ThingModel.of({"tsl": '{"properties": []}'}) is not None
