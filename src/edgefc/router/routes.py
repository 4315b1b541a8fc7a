"""The compiled route table: which targets a message goes to, each once, at the highest QoS asked for.

Route sources (CONTRACT §2): ``device:/{pk}/{dn}`` (``+`` and ``#`` allowed), ``function:{name}``, ``mqtt``,
``cloud``, ``api``, ``any``. Targets: ``function:{name}``, ``mqtt:{topic}``, ``cloud``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from edgefc.router import topics
from edgefc.router.message import Message, SourceType

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # config.fields.NAME_PATTERN
_PLAIN_SOURCES = frozenset({"mqtt", "cloud", "api", "any"})
_CACHE_LIMIT = 4096


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

    target: str
    qos: int
    routes: tuple[str, ...]


def validate_source(text: str) -> str | None:
    """The problem with a route ``source`` value, or None when it is valid."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if text in _PLAIN_SOURCES:
        return None
    kind, sep, rest = text.partition(":")
    if sep and kind == "function":
        return None if _FUNCTION_NAME.match(rest) else f"'{rest}' is not a function name"
    if sep and kind == "device":
        problem = topics.validate_filter(rest)
        if problem or not (rest == "#" or rest.startswith("/")):
            return f"'{text}': a device source is device:/{{pk}}/{{dn}} (+ and # allowed) or device:#"
        return None
    return f"'{text}' is not a source; use device:/pk/dn, function:NAME, mqtt, cloud, api or any"


def validate_target(text: str) -> str | None:
    """The problem with a route ``target`` value, or None when it is valid."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if text == "cloud":
        return None
    kind, sep, rest = text.partition(":")
    if sep and kind == "function":
        return None if _FUNCTION_NAME.match(rest) else f"'{rest}' is not a function name"
    if sep and kind == "mqtt":
        problem = topics.validate_topic(rest)
        return f"'{text}': {problem}" if problem else None
    return f"'{text}' is not a target; use function:NAME, mqtt:TOPIC or cloud"


def source_matches(source: str, message: Message) -> bool:
    """Whether a route's (valid) ``source`` value selects ``message``."""
    if source == "any":
        return True
    kind, _, rest = source.partition(":")
    if kind != message.source_type:
        return False
    if kind == SourceType.FUNCTION:
        return rest == message.source_id
    if kind == SourceType.DEVICE:
        return bool(message.source_id) and topics.matches(rest, message.source_id)
    return True


class RouteTable:
    """Routes compiled for matching; immutable once built (the router swaps whole tables on redeploy).

    Raises ValueError naming the route when a route's source, topic, target or qos is invalid (the
    manifest validation reports these with their paths first; this is the last line of defence).
    """

    def __init__(self, routes: Iterable[RouteLike] = ()) -> None:
        self.routes: tuple[RouteLike, ...] = tuple(routes)
        for route in self.routes:
            problem = (
                validate_source(route.source)
                or topics.validate_filter(route.topic)
                or validate_target(route.target)
                or (None if route.qos in (0, 1) else f"qos must be 0 or 1, got {route.qos!r}")
            )
            if problem:
                raise ValueError(f"route {route.name!r}: {problem}")
        self._cache: dict[tuple[str, str, str], tuple[Delivery, ...]] = {}

    def match(self, message: Message) -> tuple[Delivery, ...]:
        """The distinct targets of ``message`` in route order, each at the highest QoS among its routes."""
        key = (str(message.source_type), message.source_id, message.topic)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        qos: dict[str, int] = {}
        names: dict[str, list[str]] = {}
        for route in self.routes:
            if source_matches(route.source, message) and topics.matches(route.topic, message.topic):
                qos[route.target] = max(qos.get(route.target, 0), route.qos)
                names.setdefault(route.target, []).append(route.name)
        result = tuple(Delivery(target, qos[target], tuple(names[target])) for target in names)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # topic sets are small in practice; a full reset keeps this bounded
        self._cache[key] = result
        return result

    def filters_for(self, source_type: str) -> list[str]:
        """The minimal set of topic filters to subscribe to for messages of ``source_type`` (mqtt or cloud)."""
        wanted = {r.topic for r in self.routes if r.source in (source_type, "any")}
        kept = [f for f in wanted if not any(o != f and topics.covers(o, f) for o in wanted)]
        return sorted(kept)

    def targets(self) -> set[str]:
        """Every target any route names."""
        return {route.target for route in self.routes}
