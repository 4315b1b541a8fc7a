"""bench_node still runs: tiny numbers end to end, and the shape of its three figures."""

from __future__ import annotations

import pytest

from bench import bench_node
from tests.node.conftest import need_node

pytestmark = pytest.mark.timeout(90)


def test_node_benchmark_gives_its_three_figures_with_baselines() -> None:
    need_node()
    results = bench_node.run(cold_runs=2, baseline_runs=2, rounds=1, latency_n=30, warmup=5)
    assert set(results) == set(bench_node.FIGURES)
    for name, unit in (("node_cold_start_p50_ms", "ms"), ("node_invoke_http_p50_ms", "ms"), ("node_worker_idle_rss_mib", "MiB")):
        entry = results[name]
        assert entry["unit"] == unit and entry["value"] > 0, entry
        detail = entry["detail"]
        assert detail["baseline"] > 0 and detail["ratio"] == pytest.approx(entry["value"] / detail["baseline"], rel=0.02)
        assert isinstance(detail["ok"], bool)
    assert results["node_cold_start_p50_ms"]["detail"]["n"] == 2
