"""The ``routes`` entries of a manifest: where messages come from, which topics match, where they go."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PrivateAttr

from edgefc.config.fields import NAME_RE, Name, describe, require_str
from edgefc.router.routes import Target, TargetKind
from edgefc.router.topics import TopicFilter, validate_filter, validate_topic

__all__ = ["RouteSpec", "SourceKind", "Target", "TargetKind", "TopicFilter", "check_topic_filter", "check_topic_name"]

_DEVICE_LEVEL = re.compile(r"[A-Za-z0-9_.:@-]{1,64}|\+")


class SourceKind(enum.StrEnum):
    """Where a routed message comes from (CONTRACT §1, message event ``source.type``; ``any`` matches all)."""

    DEVICE = "device"
    FUNCTION = "function"
    MQTT = "mqtt"
    CLOUD = "cloud"
    API = "api"
    ANY = "any"


def check_topic_filter(text: str) -> str:
    """Check an MQTT topic filter: ``+`` and ``#`` only as whole levels, ``#`` only last. Raises ValueError."""
    problem = validate_filter(text)
    if problem:
        raise ValueError(f"topic filter {problem}" if problem.startswith("'") else f"topic filter {text!r}: {problem}")
    return text


def check_topic_name(text: str) -> str:
    """Check a concrete MQTT topic (no wildcards). Raises ValueError."""
    problem = validate_topic(text)
    if problem:
        raise ValueError(f"topic {problem}" if problem.startswith("'") else f"topic {text!r}: {problem}")
    return text


def _check_source(text: str) -> str:
    kind, sep, rest = text.partition(":")
    if kind in (SourceKind.MQTT, SourceKind.CLOUD, SourceKind.API, SourceKind.ANY) and not sep:
        return text
    if kind == SourceKind.FUNCTION and sep:
        if not NAME_RE.fullmatch(rest):
            raise ValueError(f"{text!r}: {rest!r} is not a valid function name")
        return text
    if kind == SourceKind.DEVICE and sep:
        _check_device_filter(text, rest)
        return text
    raise ValueError(
        f"unknown source {text!r}; use device:/{{pk}}/{{dn}} (+ for any, device:# for all devices), "
        "function:{name}, mqtt, cloud, api or any"
    )


def _check_device_filter(text: str, rest: str) -> None:
    hint = "write device:/{product_key}/{device_name}, device:/{pk}/+ or device:#"
    if rest == "#":
        return
    if not rest.startswith("/"):
        raise ValueError(f"{text!r}: {hint}")
    levels = rest[1:].split("/")
    if levels[-1] == "#" and len(levels) <= 2:
        levels = levels[:-1]
    elif len(levels) != 2:
        raise ValueError(f"{text!r}: a device is /{{product_key}}/{{device_name}}; {hint}")
    for level in levels:
        if not _DEVICE_LEVEL.fullmatch(level):
            raise ValueError(f"{text!r}: {level!r} is not a product key, device name or '+'; {hint}")


def _check_target(text: str) -> str:
    kind, sep, rest = text.partition(":")
    if kind == TargetKind.CLOUD and not sep:
        return text
    if kind == TargetKind.FUNCTION and sep:
        if not NAME_RE.fullmatch(rest):
            raise ValueError(f"{text!r}: {rest!r} is not a valid function name")
        return text
    if kind == TargetKind.MQTT and sep:
        check_topic_name(rest)
        return text
    raise ValueError(f"unknown target {text!r}; use function:{{name}}, mqtt:{{topic}} or cloud")


def _check_qos(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int):
        raise ValueError(f"must be 0 (at most once) or 1 (at least once), got {describe(value)}")
    return value


class RouteSpec(BaseModel):
    """One route: messages from ``source`` whose topic matches ``topic`` go to ``target`` with ``qos``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    source: Annotated[str, BeforeValidator(require_str), AfterValidator(_check_source)]
    topic: Annotated[str, BeforeValidator(require_str), AfterValidator(check_topic_filter)] = "#"
    target: Annotated[str, BeforeValidator(require_str), AfterValidator(_check_target)]
    qos: Annotated[int, BeforeValidator(_check_qos)] = 0
    # The parsed values, made once here and carried to the router (which never splits the strings again).
    _target: Target = PrivateAttr()
    _topic: TopicFilter = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        """Parse ``target`` and ``topic`` (already checked by their validators) into their value objects."""
        self._target = Target.parse(self.target)
        self._topic = TopicFilter.parse(self.topic)

    @property
    def parsed_target(self) -> Target:
        """The target as a value: ``Target(kind, name)``."""
        return self._target

    @property
    def topic_filter(self) -> TopicFilter:
        """The topic filter as a value with ``.matches()``."""
        return self._topic

    @property
    def source_kind(self) -> SourceKind:
        """The kind of source (``device``, ``function``, ``mqtt``, ``cloud``, ``api``, ``any``)."""
        return SourceKind(self.source.partition(":")[0])

    @property
    def source_id(self) -> str | None:
        """The part after ``kind:`` (``/pk/+``, a function name), or None for sources without one."""
        kind, sep, rest = self.source.partition(":")
        return rest if sep else None

    @property
    def target_kind(self) -> TargetKind:
        """The kind of target (``function``, ``mqtt``, ``cloud``)."""
        return self._target.kind

    @property
    def target_id(self) -> str | None:
        """The function name or MQTT topic of the target, or None for ``cloud``."""
        return self._target.name or None
