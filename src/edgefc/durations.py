"""The one duration syntax of edgefc: ``500ms``, ``90s``, ``10m``, ``1h30m``, ``2d``, ``1w`` (Go-style, compound).

Used by the log API's relative times (``since=10m``) and by timers (``@every 1m30s``).
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(text: str) -> float | None:
    """Seconds of a duration like ``90s`` or ``1h30m``; None when ``text`` is not one."""
    text = text.strip().lower()
    if not _WHOLE.fullmatch(text):
        return None
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
