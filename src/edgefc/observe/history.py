"""Resource history: fixed-size rings of samples (24 h at 10 s by default), saved to a JSON file now and then.

All series share one ring of timestamps; a function's series holds NaN where it had no instance, shown as
null. Memory is fixed: one float64 per series per slot (8640 slots ≈ 68 KiB per series).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from pathlib import Path
from typing import Any

HOST_SERIES = ("cpu_percent", "memory_bytes")
FUNCTION_SERIES = ("cpu_percent", "memory_bytes")

_NAN = float("nan")


class History:
    """Rings of ``capacity`` samples: host series and per-function series aligned on one time ring."""

    def __init__(self, capacity: int, interval_s: float) -> None:
        self.capacity = max(1, capacity)
        self.interval_s = interval_s
        self.count = 0  # samples ever added; the newest is at (count - 1) % capacity
        self.times = array("d", [_NAN]) * self.capacity
        self.host = {name: array("d", [_NAN]) * self.capacity for name in HOST_SERIES}
        self.functions: dict[str, dict[str, array[float]]] = {}
        self._last_seen: dict[str, int] = {}

    def add(self, t: float, host: dict[str, float], functions: dict[str, dict[str, float]]) -> None:
        """Append one sample; a function absent for a whole ring's length is forgotten."""
        slot = self.count % self.capacity
        self.times[slot] = t
        for name in HOST_SERIES:
            self.host[name][slot] = float(host.get(name, _NAN))
        for series in self.functions.values():
            for ring in series.values():
                ring[slot] = _NAN
        for function, figures in functions.items():
            if function not in self.functions:
                self.functions[function] = {n: array("d", [_NAN]) * self.capacity for n in FUNCTION_SERIES}
            series = self.functions[function]
            for name in FUNCTION_SERIES:
                series[name][slot] = float(figures.get(name, _NAN))
            self._last_seen[function] = self.count
        self.count += 1
        for function in [f for f, seen in self._last_seen.items() if self.count - seen > self.capacity]:
            del self.functions[function], self._last_seen[function]

    def _slots(self, since: float) -> list[int]:
        n = min(self.count, self.capacity)
        newest = self.count - 1
        slots = [(newest - k) % self.capacity for k in range(n)]
        slots.reverse()
        return [s for s in slots if self.times[s] >= since]

    def export(self, since: float) -> dict[str, Any]:
        """Columnar points newer than ``since``: ``time`` (epoch s) and one list per series, nulls for gaps."""
        slots = self._slots(since)
        functions = {}
        for function, series in self.functions.items():
            columns = {name: [_num(ring[s]) for s in slots] for name, ring in series.items()}
            if any(v is not None for v in columns["memory_bytes"]):
                functions[function] = columns
        return {
            "interval_s": self.interval_s,
            "time": [round(self.times[s], 3) for s in slots],
            "host": {name: [_num(ring[s]) for s in slots] for name, ring in self.host.items()},
            "functions": functions,
        }

    def save(self, path: Path) -> None:
        """Write every point to ``path`` atomically (blocking)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.export(since=-math.inf), separators=(",", ":")))
        os.replace(tmp, path)

    def load(self, path: Path, *, since: float) -> int:
        """Add the points of a file written by ``save`` that are newer than ``since``; returns how many.

        A missing or unreadable file is no history, not an error.
        """
        try:
            data = json.loads(path.read_text())
            times = data["time"]
            host = data["host"]
            functions = data["functions"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        added = 0
        for i, t in enumerate(times):
            if not isinstance(t, int | float) or t < since:
                continue
            try:
                self.add(
                    float(t),
                    {n: _float(host[n][i]) for n in HOST_SERIES},
                    {
                        f: {n: _float(cols[n][i]) for n in FUNCTION_SERIES}
                        for f, cols in functions.items()
                        if cols["memory_bytes"][i] is not None
                    },
                )
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            added += 1
        return added


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def _float(value: Any) -> float:
    return _NAN if value is None else float(value)
