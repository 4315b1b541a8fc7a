"""Per-function performance windows: counts and duration percentiles over the last minute and the last hour.

Memory is fixed per function: 60 one-second buckets and 60 one-minute buckets, each holding counters and a
sparse log-scale histogram of durations (bins 5 % wide, so a percentile is within ±2.5 % of the truth).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
_FLOOR_MS = 0.01  # durations below 10 µs share the first bin
_RATE_WINDOW_S = 10  # invocations_per_s looks at the last ten seconds so ``top`` reacts quickly

_ERRORS = frozenset({"error", "oom", "unhandled"})


def _bin(ms: float) -> int:
    if ms <= _FLOOR_MS:
        return 0
    return int(math.log(ms / _FLOOR_MS) / _LOG_RATIO)


def _bin_value(index: int) -> float:
    # The geometric middle of the bin: the estimate with the smallest worst-case relative error.
    return _FLOOR_MS * _RATIO ** (index + 0.5)


@dataclass
class _Bucket:
    key: int = -1
    count: int = 0
    errors: int = 0
    timeouts: int = 0
    busy: int = 0
    cold: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def reset(self, key: int) -> None:
        self.key = key
        self.count = self.errors = self.timeouts = self.busy = self.cold = 0
        self.hist = {}


class _Window:
    """A ring of ``slots`` buckets each ``width`` seconds wide."""

    def __init__(self, slots: int, width: int) -> None:
        self.slots = slots
        self.width = width
        self.buckets = [_Bucket() for _ in range(slots)]

    def bucket(self, now: float) -> _Bucket:
        key = int(now // self.width)
        bucket = self.buckets[key % self.slots]
        if bucket.key != key:
            bucket.reset(key)
        return bucket

    def live(self, now: float, span_s: float | None = None) -> list[_Bucket]:
        newest = int(now // self.width)
        oldest = newest - (self.slots if span_s is None else math.ceil(span_s / self.width)) + 1
        return [b for b in self.buckets if oldest <= b.key <= newest]


def _summary(buckets: list[_Bucket], span_s: float) -> dict[str, Any]:
    hist: dict[int, int] = {}
    totals = {"invocations": 0, "errors": 0, "timeouts": 0, "busy": 0, "cold_starts": 0}
    for b in buckets:
        totals["invocations"] += b.count
        totals["errors"] += b.errors
        totals["timeouts"] += b.timeouts
        totals["busy"] += b.busy
        totals["cold_starts"] += b.cold
        for index, n in b.hist.items():
            hist[index] = hist.get(index, 0) + n
    return {
        **totals,
        "invocations_per_s": round(totals["invocations"] / span_s, 3),
        "duration_ms": {"p50": _percentile(hist, 0.50), "p99": _percentile(hist, 0.99)},
    }


def _percentile(hist: dict[int, int], p: float) -> float | None:
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return round(_bin_value(index), 3)
    return None  # unreachable: rank <= total


class _FunctionPerf:
    def __init__(self) -> None:
        self.minute = _Window(60, 1)
        self.hour = _Window(60, 60)
        self.totals = {"invocations": 0, "errors": 0, "timeouts": 0, "busy": 0, "cold_starts": 0}
        self.restarts: dict[str, int] = {}


class PerfTracker:
    """Invocation counts, errors, timeouts, cold starts, restarts and duration percentiles per function."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._functions: dict[str, _FunctionPerf] = {}

    def _get(self, function: str) -> _FunctionPerf:
        perf = self._functions.get(function)
        if perf is None:
            perf = self._functions[function] = _FunctionPerf()
        return perf

    def record(self, function: str, outcome: str, seconds: float | None, cold: bool = False) -> None:
        """Count one event: ``outcome`` as in metrics (success|error|timeout|oom|unhandled|busy).

        ``seconds`` is the event's duration (None when it never ran, e.g. ``busy``); ``cold`` when the
        event waited for a new instance.
        """
        perf = self._get(function)
        now = self._clock()
        index = _bin(seconds * 1000.0) if seconds is not None and outcome != "busy" else None
        for bucket in (perf.minute.bucket(now), perf.hour.bucket(now)):
            if outcome == "busy":
                bucket.busy += 1
                continue
            bucket.count += 1
            bucket.errors += outcome in _ERRORS
            bucket.timeouts += outcome == "timeout"
            bucket.cold += cold
            if index is not None:
                bucket.hist[index] = bucket.hist.get(index, 0) + 1
        totals = perf.totals
        if outcome == "busy":
            totals["busy"] += 1
            return
        totals["invocations"] += 1
        totals["errors"] += outcome in _ERRORS
        totals["timeouts"] += outcome == "timeout"
        totals["cold_starts"] += cold

    def restart(self, function: str, reason: str) -> None:
        """Count a restart of one of the function's instances and why (exited, oom, timeout, killed, ...)."""
        restarts = self._get(function).restarts
        restarts[reason] = restarts.get(reason, 0) + 1

    def functions(self) -> list[str]:
        """Every function with recorded events or restarts."""
        return list(self._functions)

    def forget(self, function: str) -> None:
        """Drop everything about a function that is no longer deployed."""
        self._functions.pop(function, None)

    def snapshot(self, function: str) -> dict[str, Any]:
        """Totals since start, ``last_minute`` and ``last_hour`` windows, and the headline figures.

        Headline ``duration_ms`` is the last minute's, or the last hour's when the minute saw no event;
        ``invocations_per_s`` is over the last ten seconds. Percentiles are None without events.
        """
        perf = self._functions.get(function) or _FunctionPerf()
        now = self._clock()
        minute = _summary(perf.minute.live(now), 60.0)
        hour = _summary(perf.hour.live(now), 3600.0)
        recent = perf.minute.live(now, _RATE_WINDOW_S)
        headline = minute if minute["invocations"] else hour
        return {
            **perf.totals,
            "restarts": sum(perf.restarts.values()),
            "restarts_by_reason": dict(perf.restarts),
            "invocations_per_s": round(sum(b.count for b in recent) / _RATE_WINDOW_S, 3),
            "duration_ms": dict(headline["duration_ms"]),
            "last_minute": minute,
            "last_hour": hour,
        }
