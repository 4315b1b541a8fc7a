"""Performance windows: counts, percentiles over the last minute and hour, bounded memory."""

from __future__ import annotations

import random

import pytest

from edgefc.observe.perf import PerfTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_and_percentiles_near_truth() -> None:
    clock = Clock()
    perf = PerfTracker(clock)
    rng = random.Random(7)
    durations = [rng.lognormvariate(-4, 1) for _ in range(5000)]  # seconds, median ~18 ms
    for i, d in enumerate(durations):
        outcome = "error" if i % 50 == 0 else "timeout" if i % 101 == 0 else "success"
        perf.record("alarm", outcome, d, cold=i < 3)
        clock.now += 0.01  # 50 s in all
    perf.record("alarm", "busy", None)
    perf.restart("alarm", "oom")
    perf.restart("alarm", "oom")
    perf.restart("alarm", "exited")
    snap = perf.snapshot("alarm")
    ordered = sorted(durations)
    true_p50, true_p99 = ordered[2499] * 1000, ordered[4949] * 1000
    assert snap["duration_ms"]["p50"] == pytest.approx(true_p50, rel=0.03)
    assert snap["duration_ms"]["p99"] == pytest.approx(true_p99, rel=0.03)
    assert snap["invocations"] == 5000 and snap["busy"] == 1 and snap["cold_starts"] == 3
    assert snap["errors"] == 100 and snap["timeouts"] == len(
        [i for i in range(5000) if i % 101 == 0 and i % 50]
    )
    assert snap["restarts"] == 3 and snap["restarts_by_reason"] == {"oom": 2, "exited": 1}
    assert snap["last_minute"]["invocations"] == 5000 == snap["last_hour"]["invocations"]
    assert snap["invocations_per_s"] == pytest.approx(100, rel=0.05)


def test_windows_age_out() -> None:
    clock = Clock()
    perf = PerfTracker(clock)
    for _ in range(10):
        perf.record("f", "success", 0.002)
    clock.now += 120  # two minutes later: gone from the minute, still in the hour
    for _ in range(10):
        perf.record("f", "success", 0.200)
    clock.now += 30
    snap = perf.snapshot("f")
    assert snap["last_minute"]["invocations"] == 10 and snap["last_hour"]["invocations"] == 20
    assert snap["last_minute"]["duration_ms"]["p50"] == pytest.approx(200, rel=0.03)
    assert snap["last_hour"]["duration_ms"]["p50"] == pytest.approx(2, rel=0.03)
    assert snap["invocations_per_s"] == 0
    clock.now += 60
    snap = perf.snapshot("f")  # nothing in the minute: the headline falls back to the hour
    assert snap["last_minute"]["duration_ms"] == {"p50": None, "p99": None}
    assert snap["duration_ms"]["p99"] == pytest.approx(200, rel=0.03)
    clock.now += 3600
    snap = perf.snapshot("f")
    assert snap["last_hour"]["invocations"] == 0 and snap["invocations"] == 20


def test_memory_is_bounded_and_unknown_function_is_empty() -> None:
    clock = Clock()
    perf = PerfTracker(clock)
    rng = random.Random(1)
    for _ in range(20_000):
        perf.record("f", "success", rng.uniform(0, 600))
        clock.now += 1
    state = perf._functions["f"]
    assert len(state.minute.buckets) == 60 and len(state.hour.buckets) == 60
    assert all(len(b.hist) <= 400 for b in state.hour.buckets)
    empty = PerfTracker().snapshot("nobody")
    assert empty["invocations"] == 0 and empty["duration_ms"] == {"p50": None, "p99": None}
