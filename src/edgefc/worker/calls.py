"""The SDK calls a function may make, as typed and size-capped argument models: checked before the gateway acts.

A function controls every byte of a ``call`` frame; the gateway must not turn a number into an allocation
(``bytes(3_000_000_000)``), a nested value into a deep recursion, or a long string into a long key. Each
operation has a model here; :func:`parse_call` is the one entry, used where SDK calls enter the gateway
(:meth:`edgefc.supervisor.instance.Runner._serve_call`). The caps follow the public surfaces they feed: a
message payload is capped like ``POST /v1/messages``; an invoke payload like Function Compute's synchronous
invoke (6 MB); names like the manifest's.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from pydantic import ValidationError as PydanticError

from edgefc.errors import ValidationError

KIB = 1024
MAX_MESSAGE_PAYLOAD = 256 * KIB  # as POST /v1/messages (api/messages.py)
MAX_INVOKE_PAYLOAD = 6 * KIB * KIB
MAX_TOPIC = 1 * KIB  # MQTT allows 64 KiB; routes and logs need far less, and it is held per queued message
MAX_NAME = 128  # function, product key, device name, service, event, tag
MAX_VALUE_BYTES = 256 * KIB  # the encoded size of a free-form map (properties, params, args, tags)
MAX_DEPTH = 32
MAX_KEYS = 1024
MAX_TIMEOUT_S = 3600.0

Name = Annotated[StrictStr, Field(min_length=0, max_length=MAX_NAME)]
Topic = Annotated[StrictStr, Field(max_length=MAX_TOPIC)]


def _payload(value: Any, cap: int) -> bytes:
    """Bytes as they are, text as UTF-8; anything else (a number, a map) is refused before any allocation."""
    if isinstance(value, str):
        if len(value) > cap:  # a character is at least a byte: refuse before encoding
            raise ValueError(f"at most {cap} bytes")
        value = value.encode("utf-8")
    if value is None:
        return b""
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"must be bytes or text, got {type(value).__name__}")
    if len(value) > cap:
        raise ValueError(f"{len(value)} bytes; at most {cap}")
    return bytes(value)


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"must be in (0, {MAX_TIMEOUT_S:g}] seconds")
    return float(value)


def _size(value: Any, depth: int = 0) -> int:
    """A bound on the encoded size of a msgpack-decoded value; raises ValueError past the depth or key caps."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) > MAX_KEYS:
            raise ValueError(f"more than {MAX_KEYS} entries")
        return 1 + sum(_size(k, depth + 1) + _size(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        if len(value) > MAX_KEYS:
            raise ValueError(f"more than {MAX_KEYS} entries")
        return 1 + sum(_size(v, depth + 1) for v in value)
    if isinstance(value, str | bytes | bytearray):
        return 1 + len(value)
    if value is None or isinstance(value, bool | int | float):
        return 9
    raise ValueError(f"holds a value of type {type(value).__name__}")


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("must be a map with text keys")
    if _size(value) > MAX_VALUE_BYTES:
        raise ValueError(f"larger than {MAX_VALUE_BYTES} bytes")
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvokeArgs(_Args):
    name: Name
    payload: bytes = b""
    type: Literal["sync", "async"] = "sync"
    timeout: float | None = None

    @field_validator("payload", mode="before")
    @classmethod
    def check_payload(cls, v: Any) -> bytes:
        return _payload(v, MAX_INVOKE_PAYLOAD)

    @field_validator("timeout", mode="before")
    @classmethod
    def check_timeout(cls, v: Any) -> float | None:
        return _timeout(v)


class CompatInvokeArgs(InvokeArgs):
    """lecoresdk's ``Client.invoke_function``: an invoke whose ``invokerContext`` reaches the callee."""

    invoker_context: Any = None

    @field_validator("invoker_context", mode="before")
    @classmethod
    def check_invoker_context(cls, v: Any) -> Any:
        if _size(v) > MAX_VALUE_BYTES:
            raise ValueError(f"larger than {MAX_VALUE_BYTES} bytes")
        return v


class PublishArgs(_Args):
    topic: Topic
    payload: bytes = b""
    qos: Literal[0, 1] = 0

    @field_validator("payload", mode="before")
    @classmethod
    def check_payload(cls, v: Any) -> bytes:
        return _payload(v, MAX_MESSAGE_PAYLOAD)


class DeviceArgs(_Args):
    """``device.register|online|offline|unregister`` and the device part of the others."""

    product_key: Name
    device_name: Name


class ReportPropertiesArgs(DeviceArgs):
    properties: dict[str, Any]

    @field_validator("properties", mode="before")
    @classmethod
    def check_properties(cls, v: Any) -> dict[str, Any]:
        return _mapping(v)


class ReportEventArgs(DeviceArgs):
    name: Name
    params: dict[str, Any] = {}

    @field_validator("params", mode="before")
    @classmethod
    def check_params(cls, v: Any) -> dict[str, Any]:
        return _mapping(v)


class TslArgs(DeviceArgs):
    kind: Literal["tsl", "tsl_ext_info"] = "tsl"


class ThingArgs(DeviceArgs):
    timeout: float | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def check_timeout(cls, v: Any) -> float | None:
        return _timeout(v)


class GetPropertiesArgs(ThingArgs):
    keys: Annotated[list[Name], Field(max_length=MAX_KEYS)] = []


class SetPropertiesArgs(ThingArgs):
    properties: dict[str, Any]

    @field_validator("properties", mode="before")
    @classmethod
    def check_properties(cls, v: Any) -> dict[str, Any]:
        return _mapping(v)


class CallServiceArgs(ThingArgs):
    name: Name
    args: dict[str, Any] = {}

    @field_validator("args", mode="before")
    @classmethod
    def check_args(cls, v: Any) -> dict[str, Any]:
        return _mapping(v)


class FindArgs(_Args):
    tags: dict[str, Any] = {}

    @field_validator("tags", mode="before")
    @classmethod
    def check_tags(cls, v: Any) -> dict[str, Any]:
        return _mapping(v)


class NoArgs(_Args):
    pass


MODELS: dict[str, type[_Args]] = {
    "invoke": InvokeArgs,
    "compat.invoke": CompatInvokeArgs,
    "publish": PublishArgs,
    "device.list": NoArgs,
    "device.register": DeviceArgs,
    "device.online": DeviceArgs,
    "device.offline": DeviceArgs,
    "device.unregister": DeviceArgs,
    "device.report_properties": ReportPropertiesArgs,
    "device.report_event": ReportEventArgs,
    "device.tsl": TslArgs,
    "thing.get_properties": GetPropertiesArgs,
    "thing.set_properties": SetPropertiesArgs,
    "thing.call_service": CallServiceArgs,
    "thing.find": FindArgs,
}


def parse_call(op: Any, args: Any) -> tuple[str, dict[str, Any]]:
    """Check an SDK call; returns ``(op, args)`` with every argument of its declared type and within its cap.

    Arguments left out are left out of the result (the handlers keep their own defaults). Raises
    ValidationError naming the operation and the argument for an unknown operation, an unknown or missing
    argument, a wrong type or a value over its cap.
    """
    if not isinstance(op, str) or op not in MODELS:
        shown = op[:MAX_NAME] if isinstance(op, str) else type(op).__name__
        raise ValidationError([f"sdk: unknown operation {shown!r}"])
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValidationError([f"sdk {op}: arguments must be a map, got {type(args).__name__}"])
    try:
        model = MODELS[op].model_validate(args)
    except PydanticError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            problems.append(f"sdk {op}: {where}: {err['msg'].removeprefix('Value error, ')}")
        raise ValidationError(problems) from None
    return op, model.model_dump(exclude_unset=True)


__all__ = ["MODELS", "parse_call"]
