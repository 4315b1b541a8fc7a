"""CPU and memory over time for the per-gateway charts.

When the gateway's report carries its own stats history (``history``: the columnar ``time``/``host``/
``functions`` of the gateway's ``/v1/stats``), the charts draw that. Otherwise this keeps a small ring per
instance of the figures seen in successive reports (host and per-function ``cpu_percent`` and
``memory_bytes``), which is what a report without history allows.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from typing import Any

POINTS = 90
MAX_INSTANCES = 1000  # rings kept; the oldest instance's ring goes first


@dataclass
class _Sample:
    at: float
    host_cpu: float | None
    host_memory: float | None
    functions: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # cpu %, memory


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Figures:
    """Rings of reported figures per instance, and the series the charts draw."""

    def __init__(self) -> None:
        self._rings: dict[str, deque[_Sample]] = {}

    def add(self, instance_id: str, status: dict[str, Any]) -> None:
        """Remember the figures of a status report (once per report time)."""
        at = _epoch(status.get("reported_at"))
        if at is None:
            return
        ring = self._rings.get(instance_id)
        if ring is None:
            if len(self._rings) >= MAX_INSTANCES:
                self._rings.pop(next(iter(self._rings)))
            ring = self._rings[instance_id] = deque(maxlen=POINTS)
        if ring and ring[-1].at >= at:
            return
        host = status.get("host") or {}
        sample = _Sample(at, _num(host.get("cpu_percent")), _num(host.get("memory_bytes")))
        for fn in status.get("functions") or []:
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                continue
            sample.functions[fn["name"]] = (_num(fn.get("cpu_percent")), _num(fn.get("memory_bytes")))
        ring.append(sample)

    def series(self, instance_id: str, status: dict[str, Any]) -> dict[str, Any]:
        """``{"host": {"cpu": [...], "memory": [...]}, "functions": {name: {"cpu": [...], "memory": [...]}}}``.

        The gateway's history (sent about once a minute) first, then the reports seen since its last point.
        """
        ring = list(self._rings.get(instance_id) or [])
        history = status.get("history")
        times = history.get("time") if isinstance(history, dict) else None
        if not isinstance(history, dict) or not isinstance(times, list) or not times:
            history, times = {}, []
        last = max((t for t in times if isinstance(t, int | float)), default=float("-inf"))
        recent = [s for s in ring if s.at > last]
        host = history.get("host") or {}
        out: dict[str, Any] = {
            "host": {"cpu": _column(host, "cpu_percent", len(times)) + [s.host_cpu for s in recent],
                     "memory": _column(host, "memory_bytes", len(times)) + [s.host_memory for s in recent]},
            "functions": {},
        }
        old = history.get("functions") or {}
        for name in sorted(set(old) | {n for s in recent for n in s.functions}):
            found = old.get(name)
            cols: dict[str, Any] = found if isinstance(found, dict) else {}
            points = [s.functions.get(name, (None, None)) for s in recent]
            out["functions"][name] = {
                "cpu": _column(cols, "cpu_percent", len(times)) + [p[0] for p in points],
                "memory": _column(cols, "memory_bytes", len(times)) + [p[1] for p in points],
            }
        return out


def _column(columns: dict[str, Any], key: str, length: int) -> list[Any]:
    """One series of the history, padded with gaps to ``length`` (a function that started late)."""
    values = columns.get(key)
    values = list(values) if isinstance(values, list) else []
    return [None] * (length - len(values)) + values[-length:] if length else []
