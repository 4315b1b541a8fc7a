"""Time expressions of the log API: RFC 3339 instants or relative durations such as ``90s``, ``10m``, ``8h``.

A relative expression means "that long ago": ``since=8h`` is eight hours before now. Compound forms
(``1h30m``) and ``now`` are accepted too. Everything resolves to a float of epoch seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from edgefc.durations import parse_duration
from edgefc.errors import BadRequest

__all__ = ["format_time", "parse_duration", "parse_time"]



def parse_time(text: str, *, now: float, param: str = "time") -> float:
    """Epoch seconds for an RFC 3339 instant or a relative duration before ``now``.

    Raises BadRequest naming ``param`` when ``text`` is neither.
    """
    stripped = text.strip()
    if stripped.lower() == "now":
        return now
    seconds = parse_duration(stripped)
    if seconds is not None:
        return now - seconds
    try:
        # fromisoformat takes "Z" and offsets from 3.11 on; a space instead of "T" is common in pasted times.
        instant = datetime.fromisoformat(stripped)
    except ValueError:
        raise BadRequest(
            f"{param}: {text!r} is neither an RFC 3339 time (2024-05-01T03:00:00Z) "
            "nor a duration such as 90s, 10m, 2h, 1d",
            details={"parameter": param},
        ) from None
    if instant.tzinfo is None:
        # A time without an offset is taken as UTC, the zone every stored entry is shown in.
        instant = instant.replace(tzinfo=UTC)
    return instant.timestamp()


def format_time(epoch: float) -> str:
    """RFC 3339 UTC with microseconds, the form entries are returned in (and parse_time accepts back)."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (
        OverflowError,
        OSError,
        ValueError,
    ):  # a bad time stored by an older version: show it, do not fail
        return "1970-01-01T00:00:00.000000Z" if not epoch > 0 else "9999-12-31T23:59:59.999999Z"
