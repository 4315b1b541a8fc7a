"""One log line as the gateway captures it, its level and stream, and the filter a query or follower applies."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from edgefc.errors import BadRequest
from edgefc.observe.timeexpr import format_time

GATEWAY_FUNCTION = "_gateway"  # the reserved function name under which the gateway's own log is stored


class Level(enum.IntEnum):
    """Severity of an entry; queries take a minimum. The numbers are those of :mod:`logging`."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str, *, param: str = "level") -> Level:
        """The level named by ``text`` (case-insensitive, ``warn`` accepted); raises BadRequest naming ``param``."""
        level = _ALIASES.get(text.strip().lower())
        if level is None:
            names = ", ".join(member.label for member in cls)
            raise BadRequest(
                f"{param}: unknown level {text!r} (one of {names})", details={"parameter": param}
            )
        return level

    @classmethod
    def coerce(cls, value: str | int) -> Level:
        """Best-effort level of a captured line: never raises, anything unknown is ``info``."""
        if isinstance(value, int):
            for member in reversed(cls):
                if value >= member:
                    return member
            return cls.DEBUG
        return _ALIASES.get(value.strip().lower(), cls.INFO)


_ALIASES: dict[str, Level] = {member.label: member for member in Level}
_ALIASES.update({"warn": Level.WARNING, "fatal": Level.CRITICAL, "err": Level.ERROR})


class Stream(enum.StrEnum):
    """Where a line came from: raw stdout/stderr, the ``logging`` module, or the gateway about the function."""

    STDOUT = "stdout"
    STDERR = "stderr"
    LOG = "log"
    GATEWAY = "gateway"


@dataclass(slots=True)
class LogEntry:
    """A line a function (or the gateway) wrote. ``message`` may be bytes or carry bad text; the store cleans it."""

    time: float
    function: str
    instance: str
    request_id: str
    level: str
    stream: str
    message: str | bytes


@dataclass(slots=True)
class StoredEntry:
    """An entry as kept: cleaned message, numeric level and a store-wide increasing ``id``."""

    id: int
    time: float
    function: str
    instance: str
    request_id: str
    level: Level
    stream: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The CONTRACT §4 shape of an entry."""
        return {
            "time": format_time(self.time),
            "function": self.function,
            "instance": self.instance,
            "request_id": self.request_id,
            "level": self.level.label,
            "stream": self.stream,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a query or a follower wants beyond the function: minimum level, text, request id."""

    level: Level = Level.DEBUG
    q: str | None = None
    request_id: str | None = None

    def matches(self, entry: StoredEntry) -> bool:
        """Same semantics as the SQL query: level minimum, case-insensitive substring, exact request id."""
        if entry.level < self.level:
            return False
        if self.request_id is not None and entry.request_id != self.request_id:
            return False
        return not self.q or self.q.lower() in entry.message.lower()


def clean_message(message: str | bytes, max_bytes: int) -> str:
    """Text safe to store: invalid UTF-8 shown as ``\\xNN``, NUL escaped, cut at ``max_bytes`` with a mark."""
    if isinstance(message, bytes | bytearray):
        data = bytes(message)
        text = data.decode("utf-8", "backslashreplace")
    else:
        # Lone surrogates (from surrogateescape decoding of raw output) cannot be stored as UTF-8.
        data = message.encode("utf-8", "backslashreplace")
        text = message if len(data) == len(message) or _is_valid(message) else data.decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    encoded_len = len(text) if text.isascii() else len(text.encode("utf-8"))
    if encoded_len <= max_bytes:
        return text
    total = len(data)
    marked = _MARK.search(text) if text.endswith(" bytes in all]") else None
    if marked is not None:  # the worker cut the line already: keep the whole size it counted
        text, total = text[: marked.start()], int(marked.group(1))
    head = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    return f"{head}… [truncated: {total} bytes in all]"


_MARK = re.compile(r"… \[truncated: (\d+) bytes in all\]\Z")


def _is_valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
