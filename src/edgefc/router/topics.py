"""MQTT topic names and filters: validation and matching with MQTT 3.1.1/5 semantics.

``+`` matches one level, ``#`` (last level only) matches the parent and everything below, and filters that
start with a wildcard do not match topics that start with ``$`` (``$SYS/…``), as brokers do.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535


def _basic_problem(text: str) -> str | None:
    """What names and filters must both be: a non-empty string of at most 65535 bytes without NUL."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if not text:
        return "must not be empty"
    if len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"longer than {MAX_TOPIC_BYTES} bytes"
    if "\x00" in text:
        return "must not contain NUL"
    return None


def validate_topic(text: str) -> str | None:
    """The problem with a topic *name* (what a message is published on), or None when it is valid."""
    problem = _basic_problem(text)
    if problem:
        return problem
    if "+" in text or "#" in text:
        return f"'{text}' contains a wildcard (+ or #); a topic to publish on must not"
    return None


def validate_filter(text: str) -> str | None:
    """The problem with a topic *filter* (what a route or subscription matches), or None when it is valid."""
    problem = _basic_problem(text)
    if problem:
        return problem
    levels = text.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return f"'{text}': '#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return f"'{text}': '+' must be a whole level (got '{level}')"
    return None


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (both assumed valid)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    return _match_levels(topic_filter.split("/"), topic.split("/"))


def _match_levels(filter_levels: list[str], topic_levels: list[str]) -> bool:
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def covers(wide: str, narrow: str) -> bool:
    """Whether every topic that ``narrow`` matches is matched by ``wide`` too (both valid filters).

    Used to subscribe only to the filters that are not already covered by another one.
    """
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    if narrow[:1] == "$" and wide[:1] in ("+", "#"):
        return False
    for index, level in enumerate(wide_levels):
        if level == "#":
            return True
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#":
            return False
        if level != "+" and (other == "+" or level != other):
            return False
    return len(wide_levels) == len(narrow_levels)


class TopicFilter:
    """A validated MQTT topic filter, split into levels once; ``matches`` and ``covers`` as the functions above.

    Compares and hashes as its text. Build with ``TopicFilter.parse`` (raises ValueError naming the problem).
    """

    __slots__ = ("text", "levels", "_wild_first", "_exact")

    def __init__(self, text: str) -> None:
        problem = validate_filter(text)
        if problem:
            raise ValueError(problem)
        self.text = text
        self.levels = tuple(text.split("/"))
        self._wild_first = text[:1] in ("+", "#")
        self._exact = "+" not in self.levels and "#" not in self.levels

    @classmethod
    def parse(cls, text: str) -> TopicFilter:
        """The filter ``text``; raises ValueError when it is not a valid MQTT topic filter."""
        return cls(text)

    def matches(self, topic: str) -> bool:
        """Whether the topic *name* ``topic`` matches this filter."""
        if self._exact:
            return topic == self.text
        if self._wild_first and topic.startswith("$"):
            return False
        return _match_levels(list(self.levels), topic.split("/"))

    def covers(self, other: TopicFilter) -> bool:
        """Whether every topic ``other`` matches is matched by this filter too."""
        return covers(self.text, other.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"TopicFilter({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicFilter) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
