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
        """``{"host": {"cpu": [...], "memory": [...]}, "functions": {name: {"cpu": [...], "memory": [...]}}}``."""
        history = status.get("history")
        if isinstance(history, dict) and isinstance(history.get("time"), list):
            host = history.get("host") or {}
            functions = history.get("functions") or {}
            return {
                "host": {"cpu": host.get("cpu_percent") or [], "memory": host.get("memory_bytes") or []},
                "functions": {name: {"cpu": cols.get("cpu_percent") or [], "memory": cols.get("memory_bytes") or []}
                              for name, cols in functions.items() if isinstance(cols, dict)},
            }
        ring = list(self._rings.get(instance_id) or [])
        out: dict[str, Any] = {"host": {"cpu": [s.host_cpu for s in ring], "memory": [s.host_memory for s in ring]},
                               "functions": {}}
        for name in sorted({name for s in ring for name in s.functions}):
            points = [s.functions.get(name, (None, None)) for s in ring]
            out["functions"][name] = {"cpu": [p[0] for p in points], "memory": [p[1] for p in points]}
        return out
