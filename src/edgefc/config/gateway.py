"""The gateway's own configuration (CONTRACT §3): ``gateway.yaml``, then ``EDGEFC_…`` variables, then flags.

Every key is optional. ``EDGEFC_MQTT__BROKER=off`` sets ``mqtt.broker``; ``EDGEFC_`` variables that name no
key (``EDGEFC_TOKEN``, ``EDGEFC_GATEWAY``, ``EDGEFC_REQUIRE_ALL``) belong to other parts and are ignored.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeGuard
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from edgefc.config.fields import Loc, describe
from edgefc.config.problems import format_loc, translate
from edgefc.config.yamltext import load_yaml
from edgefc.errors import ValidationError
from edgefc.router.broker import BrokerPersistence

ENV_PREFIX = "EDGEFC_"
ENV_DELIMITER = "__"
MIB = 1 << 20


def split_host_port(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9999"`` → ``("127.0.0.1", 9999)``; IPv6 as ``[::1]:9999``. Raises ValueError."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (
        not sep
        or not host
        or not port.isdigit()
        or not 0 <= int(port) <= 65535
        or any(c in host for c in " /")
    ):
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:9999, [::1]:9999, 0.0.0.0:9999)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(text: str) -> str:
    split_host_port(text)
    return text


def _url_checker(schemes: tuple[str, ...], example: str) -> Any:
    def check(text: str | None) -> str | None:
        if text is None:
            return None
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"{text!r} is not a {' or '.join(schemes)} URL (e.g. {example})")
        try:
            parts.port  # noqa: B018  # raises ValueError for a port out of range
        except ValueError as exc:
            raise ValueError(f"{text!r} has an invalid port") from exc
        return text

    return check


Listen = Annotated[str, AfterValidator(_check_listen)]


class Isolation(enum.StrEnum):
    """The gateway's isolation: ``auto`` = container where runc, root and cgroups exist, else process."""

    AUTO = "auto"
    CONTAINER = "container"
    PROCESS = "process"


class BrokerMode(enum.StrEnum):
    """What ``mqtt.broker`` asks for."""

    MANAGED = "managed"  # a Mosquitto the gateway starts on mqtt.listen
    EXTERNAL = "external"  # an mqtt://host:port broker someone else runs
    OFF = "off"


def _normalise_broker(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false; both mean "no MQTT".
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false")):
        return "off"
    if isinstance(value, str) and value.strip().lower() == "managed":
        return "managed"
    if isinstance(value, str) and value.startswith("mqtt://"):
        return _url_checker(("mqtt",), "mqtt://192.168.1.10:1883")(value)
    raise ValueError(f"must be managed, off or mqtt://host:port, got {describe(value)}")


class MqttConfig(BaseModel):
    """``mqtt``: which broker the router talks to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: Annotated[str, BeforeValidator(_normalise_broker)] = "managed"
    listen: Listen = "127.0.0.1:1883"
    persistence: BrokerPersistence = BrokerPersistence.EVERY_CHANGE  # the managed Mosquitto's; docs/routing.md

    @field_validator("listen")
    @classmethod
    def _loopback_only(cls, listen: str, info: ValidationInfo) -> str:
        # The managed Mosquitto allows anonymous clients: on any other address it is an open broker for the
        # whole network (and for every container, through the bridge). broker is declared first, so it is known.
        if info.data.get("broker", "managed") == "managed" and not is_loopback(split_host_port(listen)[0]):
            raise ValueError(
                f"{listen!r} is not a loopback address: the managed broker has no authentication, so it listens "
                "on 127.0.0.1 or [::1] only. For devices on other hosts run a broker with authentication and set "
                "mqtt.broker: mqtt://host:port"
            )
        return listen

    @property
    def mode(self) -> BrokerMode:
        """Managed, external or off."""
        if self.broker in (BrokerMode.MANAGED, BrokerMode.OFF):
            return BrokerMode(self.broker)
        return BrokerMode.EXTERNAL

    @property
    def broker_address(self) -> tuple[str, int] | None:
        """(host, port) to connect to: ``listen`` when managed, the URL's when external, None when off."""
        if self.mode is BrokerMode.OFF:
            return None
        if self.mode is BrokerMode.MANAGED:
            return split_host_port(self.listen)
        parts = urlsplit(self.broker)
        return parts.hostname or "", parts.port or 1883


def _mqtt_section(value: Any) -> Any:
    # `mqtt: off` (false in YAML) is the short way to write `mqtt: {broker: off}`.
    if value is False or value == "off":
        return {"broker": "off"}
    return value


class CloudConfig(BaseModel):
    """``cloud``: the control plane this gateway pulls its deployment from, and the upstream broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[
        str | None, AfterValidator(_url_checker(("http", "https"), "https://cloud.example:8800"))
    ] = None
    gateway_id: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None  # a CA bundle to trust for an https cloud.url (a private CA)
    status_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 5.0  # how often the agent reports status
    retry_max_s: Annotated[float, Field(ge=0.1, le=3600)] = 30.0  # the cap of the agent's retry backoff
    mqtt_url: Annotated[str | None, AfterValidator(_url_checker(("mqtt", "mqtts"), "mqtt://broker:1883"))] = None
    topic_prefix: str = ""


class LogsConfig(BaseModel):
    """``logs``: how much function output is kept, and how fast a function may write it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes_per_function: Annotated[int, Field(ge=4096)] = 64 * MIB
    max_age_s: Annotated[float, Field(gt=0)] = 7 * 86400.0
    rate_limit_lines_per_s: Annotated[int, Field(ge=1)] = 2000
    max_line_bytes: Annotated[int, Field(ge=256)] = 16 * 1024
    # A follower (SSE) whose connection takes no bytes for this long is dropped (api/observe.py).
    follow_stall_s: Annotated[float, Field(gt=0)] = 30.0


class QueuesConfig(BaseModel):
    """``queues``: the durable (QoS 1) queue on disk and the in-memory (QoS 0) queues."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: Annotated[int, Field(ge=MIB)] = 256 * MIB
    max_retries: Annotated[int, Field(ge=0)] = 10
    memory_queue_size: Annotated[int, Field(ge=1)] = 10000


class LimitsConfig(BaseModel):
    """``limits``: caps on what clients may send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * MIB
    max_bundle_bytes: Annotated[int, Field(ge=1024)] = 50 * MIB
    max_bundle_files: Annotated[int, Field(ge=1)] = 10000
    # New functions' probes (one worker each) started at once by a deploy: 2 000 at once exhausted the host.
    parallel_starts: Annotated[int, Field(ge=1)] = Field(default_factory=lambda: 4 * (os.cpu_count() or 1))
    # Open HTTP connections one client address may hold; the next is answered 429 (uvicorn's own cap is 4 096 for all).
    connections_per_client: Annotated[int, Field(ge=1, le=4096)] = 256


class HousekeepingConfig(BaseModel):
    """``housekeeping``: what the gateway prunes from its data dir, and how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 600.0
    invocations_max_age_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 86400.0
    invocations_max_bytes: Annotated[int, Field(ge=0)] = 64 * MIB
    keep_deployments: Annotated[int, Field(ge=2)] = 5


class GatewayConfig(BaseModel):
    """Everything a gateway reads at start; every key has a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("./.edgefc")
    listen: Listen = "127.0.0.1:9999"
    isolation: Isolation = Isolation.AUTO
    mqtt: Annotated[MqttConfig, BeforeValidator(_mqtt_section)] = Field(default_factory=MqttConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    queues: QueuesConfig = Field(default_factory=QueuesConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    housekeeping: HousekeepingConfig = Field(default_factory=HousekeepingConfig)

    @property
    def listen_address(self) -> tuple[str, int]:
        """(host, port) the HTTP API binds."""
        return split_host_port(self.listen)


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``EDGEFC_…`` variables that name a key, as nested data (``EDGEFC_MQTT__BROKER`` → mqtt.broker).

    Names are case-insensitive; variables that name no key are dropped (they belong to the CLI or the tests).
    A section given whole (``EDGEFC_MQTT='{"broker": "off"}'``) is read as JSON, per-key variables win over it.
    Read by hand rather than with pydantic-settings: its import (with python-dotenv) cost the idle gateway
    several MiB for these few lines.
    """
    data: dict[str, Any] = {}
    whole: dict[str, Any] = {}
    for name, value in (os.environ if environ is None else environ).items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        if not all(path):
            continue
        field = GatewayConfig.model_fields.get(path[0])
        if len(path) == 1 and field is not None and _is_model(field.annotation):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value  # left to the section's own validation, which names the variable
            _set_path(whole, path, decoded)
        else:
            _set_path(data, path, value)
    return _known_only(_merge(whole, data), GatewayConfig)


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def load_gateway_config(path: Path | None = None, **overrides: Any) -> GatewayConfig:
    """Build the configuration from ``path`` (YAML, optional), ``EDGEFC_…`` variables and ``overrides``.

    Later layers win; ``None`` overrides are ignored; ``overrides`` may nest with ``__`` (``mqtt__broker``).
    Raises ValidationError naming the file, variable or flag and the key of every bad value.
    """
    source = str(path) if path is not None else "gateway.yaml"
    file_data: Any = {}
    if path is not None:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ValidationError(
                [f"{source}: cannot read the configuration file ({exc.strerror})"]
            ) from None
        try:
            file_data = load_yaml(text, source=source) or {}
        except ValueError as exc:
            raise ValidationError([str(exc)]) from None
        if not isinstance(file_data, dict):
            raise ValidationError(
                [f"{source}: the configuration must be a mapping of keys, got {describe(file_data)}"]
            )
    env_data = env_settings()
    flag_data: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is not None:
            _set_path(flag_data, key.split(ENV_DELIMITER), value)
    merged = _merge(_merge(file_data, env_data), flag_data)
    try:
        return GatewayConfig.model_validate(merged)
    except PydanticValidationError as exc:
        problems = translate(exc, GatewayConfig)
        raise ValidationError(
            [_origin(loc, message, source, env_data, flag_data) for loc, message in problems]
        ) from None


def _origin(loc: Loc, message: str, source: str, env_data: dict[str, Any], flag_data: dict[str, Any]) -> str:
    key = format_loc(loc)
    if _has_path(flag_data, loc):
        return f"option {key}: {message}"
    if _has_path(env_data, loc):
        return f"{ENV_PREFIX}{ENV_DELIMITER.join(str(p).upper() for p in loc)}: {message}"
    return f"{source}: {key}: {message}" if key else f"{source}: {message}"


def _has_path(data: Any, loc: Loc) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return bool(loc)


def _known_only(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Drop keys no field has, so an ``EDGEFC_`` variable meant for something else is ignored."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        inner = field.annotation
        if isinstance(value, dict) and _is_model(inner):
            out[key] = _known_only(value, inner)
        else:
            out[key] = value
    return out


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = data.get(part)
        if not isinstance(inner, dict):
            # a scalar already set here (``EDGEFC_MQTT=off`` and ``EDGEFC_MQTT__BROKER``): the deeper key wins
            inner = data[part] = {}
        data = inner
    data[path[-1]] = value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_name(*path: str) -> str:
    """The environment variable for a key path: ``env_name("mqtt", "broker")`` → ``EDGEFC_MQTT__BROKER``."""
    return ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in path)
