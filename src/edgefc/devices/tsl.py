"""The thing model (Alibaba's TSL, "Thing Specification Language"): checks values against their data types.

A device's model is its manifest config's ``tsl`` (as Link IoT Edge's console exports it: ``properties``,
``events``, ``services``, each with an ``identifier`` and a ``dataType``/``inputData``/``outputData``). Without a
model nothing is checked. The checks and their codes are those Link IoT Edge answers with: a name the model does
not have is 109002 (property) or 109005 (service), a value of the wrong type 109008, one outside its range or
length 100007, a write to a read-only property 109003, bad service arguments 109006.

Data types: ``int``, ``float``, ``double`` (``specs.min``/``max``), ``bool`` (0 or 1), ``enum`` (a key of
``specs``), ``text`` (``specs.length``, default 2048 characters), ``date`` (UTC milliseconds, as a number or a
digit string), ``struct`` (``specs``: a list of fields), ``array`` (``specs.size`` items of ``specs.item``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgefc.devices import codes
from edgefc.errors import DeviceError

TEXT_DEFAULT_LENGTH = 2048
ARRAY_DEFAULT_SIZE = 128
_INT_RANGE = (-(2**31), 2**31 - 1)


def _number(spec: Any, key: str) -> float | None:
    """A numeric spec bound (TSL stores them as strings); None when absent or unreadable."""
    if not isinstance(spec, dict) or spec.get(key) in (None, ""):
        return None
    try:
        return float(spec[key])
    except (TypeError, ValueError):
        return None


def check_value(name: str, data_type: Any, value: Any) -> None:
    """Check ``value`` against a TSL ``dataType`` dict; raises DeviceError (109008 type, 100007 range)."""
    if not isinstance(data_type, dict):
        return
    kind = str(data_type.get("type", "")).lower()
    specs = data_type.get("specs")
    if kind in ("int", "float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected {kind}, got {type(value).__name__} {value!r}")
        if kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected int, got {value!r}")
        if math.isnan(value) or math.isinf(value):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected a finite {kind}, got {value!r}")
        low, high = _number(specs, "min"), _number(specs, "max")
        if kind == "int":
            low = _INT_RANGE[0] if low is None else low
            high = _INT_RANGE[1] if high is None else high
        if (low is not None and value < low) or (high is not None and value > high):
            raise DeviceError(codes.PARAM_RANGE_OVERFLOW, f"{name}: {value!r} is outside [{_fmt(low)}, {_fmt(high)}]")
    elif kind == "bool":
        if value not in (0, 1) or isinstance(value, float):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected bool (0 or 1), got {value!r}")
    elif kind == "enum":
        if isinstance(value, bool) or not isinstance(value, int):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected an enum value (int), got {value!r}")
        if isinstance(specs, dict) and specs and str(value) not in specs:
            raise DeviceError(codes.PARAM_RANGE_OVERFLOW, f"{name}: {value!r} is not one of {', '.join(sorted(specs))}")
    elif kind == "text":
        if not isinstance(value, str):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected text, got {type(value).__name__}")
        limit = _number(specs, "length") or TEXT_DEFAULT_LENGTH
        if len(value) > limit:
            raise DeviceError(codes.PARAM_RANGE_OVERFLOW, f"{name}: text of {len(value)} characters exceeds {_fmt(limit)}")
    elif kind == "date":
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
            isinstance(value, str) and value.isdigit()
        )
        if not ok:
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected a date (UTC milliseconds), got {value!r}")
    elif kind == "struct":
        if not isinstance(value, dict):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected a struct (object), got {type(value).__name__}")
        fields = {f.get("identifier"): f for f in specs or [] if isinstance(f, dict)}
        for key, item in value.items():
            if key not in fields:
                raise DeviceError(codes.INVALID_TYPE, f"{name}.{key}: the struct has no such field")
            check_value(f"{name}.{key}", fields[key].get("dataType"), item)
    elif kind == "array":
        if not isinstance(value, list):
            raise DeviceError(codes.INVALID_TYPE, f"{name}: expected an array, got {type(value).__name__}")
        size = _number(specs, "size") or ARRAY_DEFAULT_SIZE
        if len(value) > size:
            raise DeviceError(codes.PARAM_RANGE_OVERFLOW, f"{name}: {len(value)} items exceed the array size {_fmt(size)}")
        item_type = specs.get("item") if isinstance(specs, dict) else None
        for i, item in enumerate(value):
            check_value(f"{name}[{i}]", item_type, item)


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "…"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


class ThingModel:
    """A device's thing model; every check raises DeviceError with Link IoT Edge's code."""

    def __init__(self, tsl: dict[str, Any]) -> None:
        self.properties = {p["identifier"]: p for p in tsl.get("properties") or [] if isinstance(p, dict) and "identifier" in p}
        self.events = {e["identifier"]: e for e in tsl.get("events") or [] if isinstance(e, dict) and "identifier" in e}
        self.services = {s["identifier"]: s for s in tsl.get("services") or [] if isinstance(s, dict) and "identifier" in s}

    @classmethod
    def of(cls, config: Any) -> ThingModel | None:
        """The model in a device's config (``tsl``: an object or its JSON text); None without one."""
        tsl = config.get("tsl") if isinstance(config, dict) else None
        if isinstance(tsl, str):
            try:
                tsl = json.loads(tsl)
            except ValueError:
                return None
        return cls(tsl) if isinstance(tsl, dict) else None

    def _property(self, name: str) -> dict[str, Any]:
        found = self.properties.get(name)
        if found is None:
            raise DeviceError(codes.PROPERTY_NOT_EXIST, f"{name}: the thing model has no such property")
        return found

    def check_report(self, properties: dict[str, Any]) -> None:
        """Properties a driver reports: each known, each value of its type."""
        for name, value in properties.items():
            check_value(name, self._property(name).get("dataType"), value)

    def check_set(self, properties: dict[str, Any]) -> None:
        """Properties an application sets: each known, writable, each value of its type."""
        for name, value in properties.items():
            prop = self._property(name)
            if str(prop.get("accessMode", "rw")) == "r":
                raise DeviceError(codes.PROPERTY_READ_ONLY, f"{name}: the property is read-only")
            check_value(name, prop.get("dataType"), value)

    def check_get(self, keys: list[str]) -> None:
        """Properties an application reads: each known and readable."""
        for name in keys:
            if str(self._property(name).get("accessMode", "rw")) == "w":
                raise DeviceError(codes.PROPERTY_WRITE_ONLY, f"{name}: the property is write-only")

    def check_event(self, event: str, params: dict[str, Any]) -> None:
        """An event a driver reports: its outputs typed (an event the model lacks is passed on unchecked, as
        Link IoT Edge's SDKs do not check them either)."""
        spec = self.events.get(event)
        if spec is None:
            return
        self._check_args(spec.get("outputData"), params, codes.INVALID_TYPE)

    def check_service(self, service: str, args: dict[str, Any]) -> None:
        """A service call: the service known, its inputs typed (109006 for a bad one)."""
        spec = self.services.get(service)
        if spec is None:
            raise DeviceError(codes.SERVICE_NOT_EXIST, f"{service}: the thing model has no such service")
        self._check_args(spec.get("inputData"), args, codes.SERVICE_INPUT_PARAM)

    @staticmethod
    def _check_args(declared: Any, values: dict[str, Any], code: int) -> None:
        fields = {f.get("identifier"): f for f in declared or [] if isinstance(f, dict)}
        for key, value in values.items():
            if key not in fields:
                raise DeviceError(code, f"{key}: not a parameter of the thing model")
            try:
                check_value(key, fields[key].get("dataType"), value)
            except DeviceError as exc:
                raise DeviceError(code if code == codes.SERVICE_INPUT_PARAM else exc.code, exc.message) from None


__all__ = ["ThingModel", "check_value"]
