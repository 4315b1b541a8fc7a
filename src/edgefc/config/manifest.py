"""The deployment manifest (CONTRACT §2): the whole desired state of one gateway, validated at the boundary.

The models are frozen and refuse unknown keys. Checks that span entries (duplicate names, routes and devices
naming unknown functions) live in :func:`cross_problems`, which works on raw data too, so that a manifest
with a typo somewhere still gets its duplicate names reported in the same answer.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from edgefc.config.fields import (
    EnvMap,
    HandlerRef,
    Json,
    Loc,
    Name,
    NullAsEmpty,
    Problems,
    StrictBool,
    StrictStr,
    bounded_int,
    describe,
    patterned,
    require_str,
    seconds,
)
from edgefc.config.routes import RouteSpec, SourceKind, TargetKind
from edgefc.sandbox.base import ContainerSpec
from edgefc.scheduler.cron import Schedule, parse_schedule

MAX_CONTAINER_ITEMS = 10
DEFAULT_IDLE_TIMEOUT_S = 300.0
_PORT = re.compile(r"(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


class Mode(enum.StrEnum):
    """How a function runs: ``on_demand`` starts instances for events, ``continuous`` keeps one running."""

    ON_DEMAND = "on_demand"
    CONTINUOUS = "continuous"


class Isolation(enum.StrEnum):
    """What a function asks to be isolated by; ``default`` defers to the gateway's ``isolation`` setting."""

    CONTAINER = "container"
    PROCESS = "process"
    DEFAULT = "default"


def _check_port(text: str) -> str:
    match = _PORT.fullmatch(text)
    if not match:
        raise ValueError(f"port {text!r}: write host:container[/tcp|udp], e.g. '8080:80/tcp'")
    for port in (int(match.group(1)), int(match.group(2))):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {text!r}: ports must be between 1 and 65535, got {port}")
    return text


def _split_mapping(text: str, what: str, example: str) -> list[str]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValueError(f"{what} {text!r}: write host:container[:options], e.g. {example!r}")
    for path in parts[:2]:
        if not path.startswith("/"):
            raise ValueError(f"{what} {text!r}: {path!r} must be an absolute path")
        if "/../" in path + "/" or path.endswith("/.."):
            raise ValueError(f"{what} {text!r}: {path!r} must not contain '..'")
    return parts


def _check_device(text: str) -> str:
    parts = _split_mapping(text, "device", "/dev/ttyUSB0:/dev/ttyS0:rwm")
    if len(parts) == 3:
        perms = parts[2]
        if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
            raise ValueError(f"device {text!r}: permissions must be letters from 'rwm', got {perms!r}")
    return text


def _check_volume(text: str) -> str:
    parts = _split_mapping(text, "volume", "/var/lib/app:/data:ro")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise ValueError(f"volume {text!r}: the option must be ro or rw, got {parts[2]!r}")
    return text


def _list_of(check: Any, what: str) -> Any:
    def at_most(items: list[str]) -> list[str]:
        if len(items) > MAX_CONTAINER_ITEMS:
            raise ValueError(f"at most {MAX_CONTAINER_ITEMS} {what}, got {len(items)}")
        return items

    entry = Annotated[str, BeforeValidator(require_str), AfterValidator(check)]
    return Annotated[list[entry], NullAsEmpty, AfterValidator(at_most)]  # type: ignore[valid-type]


class ContainerSection(BaseModel):
    """The ``container`` section of a function: network, ports, devices and volumes of its container."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host_network: StrictBool = False
    ports: _list_of(_check_port, "ports") = Field(default_factory=list)  # type: ignore[valid-type]
    privileged: StrictBool = False
    devices: _list_of(_check_device, "devices") = Field(default_factory=list)  # type: ignore[valid-type]
    volumes: _list_of(_check_volume, "volumes") = Field(default_factory=list)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _consistent(self) -> ContainerSection:
        problems: list[tuple[Loc, str]] = []
        if self.privileged and self.devices:
            problems.append((("devices",), "a privileged container already sees every device; "
                                           "drop devices or privileged"))
        if self.host_network and self.ports:
            problems.append((("ports",), "with host_network the function binds host ports directly; "
                                         "drop ports or host_network"))
        if problems:
            raise Problems(problems)
        return self


def _check_schedule(text: str) -> str:
    parse_schedule(text)  # its ValueError carries the message the user sees
    return text


def _check_version(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {describe(value)} (write it in quotes, e.g. version: \"1.0\")")
    return value


class FunctionSpec(BaseModel):
    """One function of a deployment, with every setting of CONTRACT §2 and its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    code: StrictStr | None = None
    handler: HandlerRef
    # Node.js: the major version a function needs at least; the gateway's node (>= 18) runs it (docs/nodejs.md).
    runtime: Literal["python3", "nodejs18", "nodejs20", "nodejs22"] = "python3"
    initializer: HandlerRef | None = None
    config: Json = None
    mode: Mode = Mode.ON_DEMAND
    memory_mb: bounded_int(16, 16384) = 512  # type: ignore[valid-type]
    timeout_s: seconds(86400) = 3.0  # type: ignore[valid-type]
    idle_timeout_s: seconds(86400) | None = None  # type: ignore[valid-type]
    max_concurrency: bounded_int(1, 1000) = 1  # type: ignore[valid-type]
    max_instances: bounded_int(1, 100) = 1  # type: ignore[valid-type]
    max_queue: bounded_int(0, 100000) = 100  # type: ignore[valid-type]
    restart_backoff_max_s: seconds(86400) = 60.0  # type: ignore[valid-type]  # continuous: longest wait between restarts
    cpu: Annotated[float, Field(ge=0.01, le=1024, allow_inf_nan=False, strict=False)] | None = None  # cores (quota)
    schedule: Annotated[str, BeforeValidator(require_str), AfterValidator(_check_schedule)] | None = None
    schedule_payload: Json = None
    env: EnvMap = Field(default_factory=dict)
    isolation: Isolation = Isolation.DEFAULT
    container: ContainerSection | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FunctionSpec:
        problems: list[tuple[Loc, str]] = []
        if self.mode is Mode.CONTINUOUS and self.idle_timeout_s is not None:
            problems.append((("idle_timeout_s",), "only applies to on_demand functions; a continuous "
                                                  "function is never stopped for idleness"))
        if self.mode is Mode.CONTINUOUS and self.max_instances != 1:
            problems.append((("max_instances",), "a continuous function runs exactly one instance; "
                                                 "leave max_instances at 1"))
        if self.container is not None and self.isolation is Isolation.PROCESS:
            problems.append((("container",), "container settings need isolation container or default, "
                                             "not process"))
        if problems:
            raise Problems(problems)
        return self

    @property
    def effective_idle_timeout_s(self) -> float | None:
        """Seconds without events before an on_demand instance stops (300 by default); None for continuous."""
        if self.mode is Mode.CONTINUOUS:
            return None
        return self.idle_timeout_s if self.idle_timeout_s is not None else DEFAULT_IDLE_TIMEOUT_S

    @property
    def parsed_schedule(self) -> Schedule | None:
        """The parsed ``schedule``, or None when the function has no timer."""
        return parse_schedule(self.schedule) if self.schedule is not None else None

    def container_spec(self) -> ContainerSpec:
        """The container section as the sandbox layer's :class:`ContainerSpec` (defaults when absent)."""
        section = self.container or ContainerSection()
        return ContainerSpec(
            host_network=section.host_network,
            ports=tuple(section.ports),
            privileged=section.privileged,
            devices=tuple(section.devices),
            volumes=tuple(section.volumes),
            cpu=self.cpu,
        )


class DeviceSpec(BaseModel):
    """One device the gateway knows, served by a ``continuous`` driver function."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_key: Annotated[str, BeforeValidator(require_str),
                           AfterValidator(patterned(_DEVICE_ID, "product key (letters, digits, _.:@-)"))]
    device_name: Annotated[str, BeforeValidator(require_str),
                           AfterValidator(patterned(_DEVICE_ID, "device name (letters, digits, _.:@-)"))]
    driver: Name
    config: Json = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class Manifest(BaseModel):
    """A whole deployment: functions, routes, devices and an optional version name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[str, BeforeValidator(_check_version),
                       AfterValidator(patterned(_VERSION, "version (letters, digits, ._+-, up to 64)"))] | None = None
    functions: Annotated[list[FunctionSpec], NullAsEmpty] = Field(default_factory=list)
    routes: Annotated[list[RouteSpec], NullAsEmpty] = Field(default_factory=list)
    devices: Annotated[list[DeviceSpec], NullAsEmpty] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = cross_problems(self.model_dump())
        if problems:
            raise CrossProblems(problems)
        return self

    def function(self, name: str) -> FunctionSpec | None:
        """The function called ``name``, or None."""
        return next((f for f in self.functions if f.name == name), None)


class CrossProblems(Problems):
    """Problems between manifest entries; the loader reports these from raw data, so it skips these."""


def cross_problems(data: Any) -> list[tuple[Loc, str]]:
    """Problems that span entries: duplicates and references to unknown or unsuitable functions.

    Works on raw (unvalidated) data, skipping whatever is too malformed to judge; never raises.
    """
    if not isinstance(data, dict):
        return []
    problems: list[tuple[Loc, str]] = []
    modes: dict[str, str] = {}
    for index, name, item in _named(data, "functions", "name"):
        if name in modes:
            problems.append((("functions", index, "name"), f"duplicate function name {name!r}"))
        mode = item.get("mode", Mode.ON_DEMAND)
        modes.setdefault(name, mode if isinstance(mode, str) else "")
    seen_routes: set[str] = set()
    for index, name, item in _named(data, "routes", "name"):
        if name in seen_routes:
            problems.append((("routes", index, "name"), f"duplicate route name {name!r}"))
        seen_routes.add(name)
        for key, prefix in (("source", f"{SourceKind.FUNCTION}:"), ("target", f"{TargetKind.FUNCTION}:")):
            ref = item.get(key)
            if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix):] not in modes:
                problems.append((("routes", index, key), f"no function named {ref[len(prefix):]!r} "
                                                         "in this manifest"))
    seen_devices: set[tuple[Any, Any]] = set()
    for index, item in _items(data, "devices"):
        pair = (item.get("product_key"), item.get("device_name"))
        if all(isinstance(part, str) for part in pair):
            if pair in seen_devices:
                problems.append((("devices", index), f"duplicate device /{pair[0]}/{pair[1]}"))
            seen_devices.add(pair)
        driver = item.get("driver")
        if isinstance(driver, str):
            if driver not in modes:
                problems.append((("devices", index, "driver"), f"no function named {driver!r} in this manifest"))
            elif modes[driver] != Mode.CONTINUOUS:
                problems.append((("devices", index, "driver"), f"driver {driver!r} must be a continuous "
                                                               "function (mode: continuous)"))
    return problems


def _items(data: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    entries = data.get(key)
    if not isinstance(entries, list):
        return []
    return [(index, item) for index, item in enumerate(entries) if isinstance(item, dict)]


def _named(data: dict[str, Any], key: str, field: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i, item[field], item) for i, item in _items(data, key) if isinstance(item.get(field), str)]
