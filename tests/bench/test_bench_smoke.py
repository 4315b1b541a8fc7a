"""The benchmarks still run: one cheap benchmark end to end with a tiny n, and the shape of its figures."""

from __future__ import annotations

import pytest

from bench import __main__ as runner
from bench import bench_sdk
from bench import figure as fig

pytestmark = pytest.mark.timeout(60)


def test_sdk_benchmark_gives_a_contract_figure_with_its_baseline() -> None:
    results = bench_sdk.run(calls=20, warmup=2)
    entry = results["invoke_sdk_p50_ms"]
    assert entry["unit"] == "ms" and isinstance(entry["value"], float) and entry["value"] > 0
    detail = entry["detail"]
    assert detail["n"] == 20
    assert detail["baseline"] > 0 and detail["ratio"] == pytest.approx(
        entry["value"] / detail["baseline"], rel=0.02
    )
    assert detail["target"] == "<= 0.3 ms" and isinstance(detail["ok"], bool)


def test_ratio_target_needs_both_bounds() -> None:
    entry = fig.figure(5000, "per_s", n=8, target=fig.at_least(3000, ratio=0.4), baseline=20000)
    assert entry["detail"]["ratio"] == 0.25 and entry["detail"]["ok"] is False
    assert runner.target_of(entry) == (">= 3000 per_s, >= 0.4x", False)
    assert fig.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_a_figure_with_only_a_target_key_of_its_own_is_judged() -> None:
    assert runner.target_of({"value": 120, "unit": "ms", "detail": {"target_ms": 200}}) == ("<= 200 ms", True)
    assert runner.target_of({"value": 90, "unit": "per_s", "detail": {"target_per_s": 100}}) == (
        ">= 100 per_s",
        False,
    )
