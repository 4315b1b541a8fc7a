"""The compiled route table: which targets a message goes to, each once, at the highest QoS asked for.

Route sources (CONTRACT §2): ``device:/{pk}/{dn}`` (``+`` and ``#`` allowed), ``function:{name}``, ``mqtt``,
``cloud``, ``api``, ``any``. Targets: ``function:{name}``, ``mqtt:{topic}``, ``cloud``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from edgefc.router import topics
from edgefc.router.message import Message, SourceType
from edgefc.router.topics import TopicFilter

_PLAIN_SOURCES = frozenset({"mqtt", "cloud", "api", "any"})
_CACHE_LIMIT = 4096


class TargetKind(enum.StrEnum):
    """Where a route delivers."""

    FUNCTION = "function"
    MQTT = "mqtt"
    CLOUD = "cloud"


@dataclass(frozen=True, slots=True)
class Target:
    """A route target as a value: ``Target(FUNCTION, "alarm")``, ``Target(MQTT, "out/t")``, ``Target(CLOUD)``.

    ``str(target)`` is the manifest's spelling (``function:alarm``), which is also the durable queue's key.
    """

    kind: TargetKind
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        """``function:{name}``, ``mqtt:{topic}`` or ``cloud`` → a Target; raises ValueError saying what is wrong.

        A function name is only checked for being there: its pattern is the manifest's business.
        """
        if not isinstance(text, str):
            raise ValueError(f"must be a string, got {type(text).__name__}")
        if text == "cloud":
            return cls(TargetKind.CLOUD)
        kind, sep, rest = text.partition(":")
        if sep and kind == "function" and rest and "/" not in rest and ":" not in rest:
            return cls(TargetKind.FUNCTION, rest)
        if sep and kind == "mqtt":
            problem = topics.validate_topic(rest)
            if problem:
                raise ValueError(f"'{text}': {problem}")
            return cls(TargetKind.MQTT, rest)
        raise ValueError(f"'{text}' is not a target; use function:NAME, mqtt:TOPIC or cloud")

    def __str__(self) -> str:
        return str(self.kind) if self.kind is TargetKind.CLOUD else f"{self.kind}:{self.name}"


class RouteLike(Protocol):
    """What the table needs of a route; ``edgefc.config``'s ``RouteSpec`` has these fields."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def qos(self) -> int: ...


@dataclass(frozen=True)
class Route:
    """A plain route, for tests and callers that do not hold a ``RouteSpec``."""

    name: str
    source: str
    topic: str
    target: str
    qos: int = 0


@dataclass(frozen=True)
class Delivery:
    """One target a message goes to, the QoS it goes with and the routes that sent it there."""

    target: Target
    qos: int
    routes: tuple[str, ...]


@dataclass(frozen=True)
class CompiledRoute:
    """A route with its source split, its topic a TopicFilter and its target a Target (parsed once)."""

    name: str
    source: str
    source_kind: str
    source_rest: TopicFilter | str | None
    topic: TopicFilter
    target: Target
    qos: int

    @classmethod
    def of(cls, route: RouteLike) -> CompiledRoute:
        """Compile a route; raises ValueError naming the route when a part of it is invalid."""
        parsed_topic = getattr(route, "topic_filter", None)
        parsed_target = getattr(route, "parsed_target", None)
        try:
            problem = validate_source(route.source)
            if problem:
                raise ValueError(problem)
            topic = parsed_topic if isinstance(parsed_topic, TopicFilter) else TopicFilter.parse(route.topic)
            target = parsed_target if isinstance(parsed_target, Target) else Target.parse(route.target)
            if route.qos not in (0, 1):
                raise ValueError(f"qos must be 0 or 1, got {route.qos!r}")
        except ValueError as exc:
            raise ValueError(f"route {route.name!r}: {exc}") from None
        kind, sep, rest = route.source.partition(":")
        source_rest: TopicFilter | str | None = None
        if kind == "device":
            source_rest = TopicFilter.parse(rest)
        elif kind == "function":
            source_rest = rest
        return cls(route.name, route.source, kind, source_rest, topic, target, route.qos)

    def selects(self, message: Message) -> bool:
        """Whether this route's source selects ``message`` (its topic is checked separately)."""
        kind = self.source_kind
        if kind == "any":
            return True
        if kind != message.source_type:
            return False
        if kind == SourceType.FUNCTION:
            return self.source_rest == message.source_id
        if kind == SourceType.DEVICE:
            assert isinstance(self.source_rest, TopicFilter)
            return bool(message.source_id) and self.source_rest.matches(message.source_id)
        return True


def validate_source(text: str) -> str | None:
    """The problem with a route ``source`` value, or None when it is valid."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if text in _PLAIN_SOURCES:
        return None
    kind, sep, rest = text.partition(":")
    if sep and kind == "function":
        return None if rest and "/" not in rest and ":" not in rest else f"'{rest}' is not a function name"
    if sep and kind == "device":
        problem = topics.validate_filter(rest)
        if problem or not (rest == "#" or rest.startswith("/")):
            return f"'{text}': a device source is device:/{{pk}}/{{dn}} (+ and # allowed) or device:#"
        return None
    return f"'{text}' is not a source; use device:/pk/dn, function:NAME, mqtt, cloud, api or any"


def validate_target(text: str) -> str | None:
    """The problem with a route ``target`` value, or None when it is valid."""
    try:
        Target.parse(text)
    except ValueError as exc:
        return str(exc)
    return None


class RouteTable:
    """Routes compiled for matching; immutable once built (the router swaps whole tables on redeploy).

    Raises ValueError naming the route when a route's source, topic, target or qos is invalid (the
    manifest validation reports these with their paths first; this is the last line of defence).
    """

    def __init__(self, routes: Iterable[RouteLike] = ()) -> None:
        self.routes: tuple[CompiledRoute, ...] = tuple(CompiledRoute.of(route) for route in routes)
        self._cache: dict[tuple[str, str, str], tuple[Delivery, ...]] = {}

    def match(self, message: Message) -> tuple[Delivery, ...]:
        """The distinct targets of ``message`` in route order, each at the highest QoS among its routes."""
        key = (str(message.source_type), message.source_id, message.topic)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        qos: dict[Target, int] = {}
        names: dict[Target, list[str]] = {}
        for route in self.routes:
            if route.selects(message) and route.topic.matches(message.topic):
                qos[route.target] = max(qos.get(route.target, 0), route.qos)
                names.setdefault(route.target, []).append(route.name)
        result = tuple(Delivery(target, qos[target], tuple(names[target])) for target in names)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # topic sets are small in practice; a full reset keeps this bounded
        self._cache[key] = result
        return result

    def filters_for(self, source_type: str) -> list[TopicFilter]:
        """The minimal set of topic filters to subscribe to for messages of ``source_type`` (mqtt or cloud)."""
        wanted = {r.topic for r in self.routes if r.source in (source_type, "any")}
        kept = [f for f in wanted if not any(o != f and o.covers(f) for o in wanted)]
        return sorted(kept, key=str)

    def targets(self) -> set[Target]:
        """Every target any route names."""
        return {route.target for route in self.routes}
