"""Timer schedules: cron text (5 or 6 fields), ``@every <duration>`` and an optional ``CRON_TZ=`` prefix.

Three dialects meet here because users bring functions from three places: Link IoT Edge writes 5-field cron
(``*/5 * * * *``), Function Compute writes 6 fields with *seconds first* (``0 */5 * * * *``), Greengrass and
Go programs write ``@every 10s``. Any of them may start with ``CRON_TZ=Area/City `` to fire in local time.
The cron arithmetic is croniter's; this module only parses, validates and normalises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edgefc import durations

_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleKind(enum.StrEnum):
    """What a schedule's text turned out to be."""

    CRON = "cron"  # 5 fields, minute first
    CRON_SECONDS = "cron_seconds"  # 6 fields, seconds first (Function Compute)
    EVERY = "every"  # a fixed interval


@dataclass(frozen=True)
class Schedule:
    """A parsed, valid schedule; ``next_after`` gives the next firing time strictly after a moment."""

    text: str  # what the user wrote, for status and error messages
    kind: ScheduleKind
    expression: str = ""  # the cron fields without the CRON_TZ prefix (empty for EVERY)
    interval: timedelta | None = None  # set for EVERY
    tz: str = "UTC"  # the IANA zone the cron fields are read in

    def next_after(self, dt: datetime) -> datetime:
        """The first firing time strictly after ``dt`` (aware), as an aware UTC datetime.

        Raises ValueError for a naive ``dt``. ``@every`` intervals are anchored at the Unix epoch, so every
        gateway and every restart agrees on the firing times and nothing drifts.
        """
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError("next_after needs an aware datetime (e.g. datetime.now(UTC))")
        if self.interval is not None:
            step = self.interval
            elapsed = dt.astimezone(UTC) - _EPOCH
            periods = elapsed // step + 1
            return _EPOCH + periods * step
        from croniter import croniter  # here, not at the top: see _checked_cron

        local = dt.astimezone(ZoneInfo(self.tz))
        it = croniter(
            self.expression, local, second_at_beginning=self.kind is ScheduleKind.CRON_SECONDS
        )
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string into a :class:`Schedule`.

    Raises ValueError with a message meant for the person who wrote the manifest (the caller adds the path).
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a string such as '*/5 * * * *' or '@every 10s', got {type(text).__name__}")
    rest = text.strip()
    if not rest:
        raise ValueError("must not be empty; use e.g. '*/5 * * * *', '0 */5 * * * *' or '@every 10s'")
    tz = "UTC"
    if rest.startswith("CRON_TZ="):
        head, _, rest = rest.partition(" ")
        tz = _parse_zone(head.removeprefix("CRON_TZ="))
        rest = rest.strip()
        if not rest:
            raise ValueError(f"'{text}' has a CRON_TZ prefix but no schedule after it")
    if rest.startswith("@every"):
        return Schedule(text=text, kind=ScheduleKind.EVERY, interval=_parse_every(rest), tz=tz)
    if rest.startswith("@"):
        if rest.lower() not in _MACROS:
            raise ValueError(
                f"unknown schedule '{rest}'; the @ forms are '@every <duration>' and "
                + ", ".join(sorted(_MACROS))
            )
        return _checked_cron(text, rest.lower(), ScheduleKind.CRON, tz)
    fields = rest.split()
    if len(fields) == 5:
        return _checked_cron(text, " ".join(fields), ScheduleKind.CRON, tz)
    if len(fields) == 6:
        return _checked_cron(text, " ".join(fields), ScheduleKind.CRON_SECONDS, tz)
    raise ValueError(
        f"'{rest}' has {len(fields)} field(s); use 5 fields (minute hour day month weekday), "
        "6 fields with seconds first (second minute hour day month weekday) or '@every <duration>'"
    )


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``10s``, ``1m30s``, ``2h`` or ``500ms`` (:mod:`edgefc.durations`).

    Raises ValueError when the text is not such a duration.
    """
    seconds = durations.parse_duration(text)
    if seconds is None:
        raise ValueError(f"'{text}' is not a duration; write e.g. 10s, 1m30s, 2h or 500ms")
    return timedelta(seconds=seconds)


def _parse_every(rest: str) -> timedelta:
    duration = rest.removeprefix("@every").strip()
    if not duration:
        raise ValueError("'@every' needs a duration, e.g. '@every 10s', '@every 1m30s', '@every 2h'")
    interval = parse_duration(duration)
    if interval < timedelta(seconds=1):
        raise ValueError(f"'@every {duration}' is too short; the interval must be at least 1s")
    if interval > timedelta(days=366):
        raise ValueError(f"'@every {duration}' is too long; the interval must be at most 366 days")
    return interval


def _parse_zone(name: str) -> str:
    if not name:
        raise ValueError("CRON_TZ= needs a zone name, e.g. 'CRON_TZ=Europe/Berlin 0 8 * * *'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone '{name}' in CRON_TZ (use an IANA name such as Asia/Shanghai)") from exc
    return name


def _checked_cron(text: str, expression: str, kind: ScheduleKind, tz: str) -> Schedule:
    seconds_first = kind is ScheduleKind.CRON_SECONDS
    if any(field[:1] in "HhRr" for field in expression.split()) and not expression.startswith("@"):
        # croniter's hashed (H) and random (R) fields fire at times nobody can read off the manifest.
        raise ValueError(f"'{expression}': hashed (H) and random (R) fields are not supported")
    # Imported on the first cron schedule: croniter (with dateutil) costs ~3 MiB that a gateway without
    # cron timers never needs (manifest validation imports this module for every deploy).
    from croniter import croniter

    try:
        it = croniter(expression, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=seconds_first)
        # Some expressions parse but can never fire (30 February); find out now, not at midnight.
        it.get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(_cron_message(expression, seconds_first, exc)) from exc
    return Schedule(text=text, kind=kind, expression=expression, tz=tz)


def _cron_message(expression: str, seconds_first: bool, exc: Exception) -> str:
    layout = "second minute hour day month weekday" if seconds_first else "minute hour day month weekday"
    reason = str(exc)
    if "failed to find next date" in reason:
        return f"'{expression}' never fires (no date matches it)"
    if "out of range" in reason:
        return f"'{expression}' has a value out of range (fields: {layout})"
    return f"'{expression}' is not valid cron (fields: {layout})"
