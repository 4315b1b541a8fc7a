"""Cold starts of an on-demand function (process and container sandbox) and warm invokes in a container.

A cold start is forced each time: the function has ``idle_timeout_s: 0.05``, and the benchmark waits until
the status shows no instance before the next invoke. The time is the client's: from sending the invoke to
having the whole response, on a kept-alive connection. The gateway's own figure (start to ready, the
``edgefc_cold_start_seconds`` histogram) is in ``detail``.

- ``cold_start_process_p50_ms`` vs ``python -c pass`` start-to-exit (same interpreter).
- ``cold_start_container_p50_ms`` vs a bare ``runc run`` of ``python -c pass`` (:mod:`bench.runc_baseline`).
- ``invoke_container_warm_p50_ms`` vs the process sandbox's warm p50, alternating rounds, same client.

Run alone with ``python -m bench.bench_cold_start``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

from bench import runc_baseline
from bench.figure import Target, at_most, figure, percentile, skipped
from bench.gateway import BenchGateway, function
from bench.http_load import run_loadgen

log = logging.getLogger("bench.cold_start")

HELLO = "def handler(event, context):\n    return b'hello'\n"
COLD_RUNS = 30
BASELINE_RUNS = 30
HOST_NET_RUNS = 15  # the same with container.host_network: shows what the network namespace costs
WARM_ROUNDS = 2
WARM_N = 500  # per round and sandbox
WARM_SLACK = 1.10  # "within 10 %" of the process sandbox


def _python_pass(runs: int, *flags: str) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _no_instance(gw: BenchGateway, name: str) -> bool:
    return not gw.status(name)["instances"]


def _cold_starts(gw: BenchGateway, runs: int, name: str = "cold", **settings: Any) -> dict[str, Any]:
    """Deploy ``name`` with a 50 ms idle timeout and time ``runs`` invokes that each start an instance."""
    gw.deploy([function(name, memory_mb=128, idle_timeout_s=0.05, **settings)], {name: HELLO})
    gw.invoke(name, b"warm the connection")
    times: list[float] = []
    for _ in range(runs):
        gw.wait_for(lambda: _no_instance(gw, name), timeout=30, what="the idle instance to stop")
        t0 = time.perf_counter()
        status, body = gw.invoke(name, b"x")
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200 or body != b"hello":
            raise RuntimeError(f"cold invoke failed: {status} {body[:300]!r}")
    counted = gw.status(name)["cold_starts"]
    if counted < runs + 1:
        raise RuntimeError(f"expected {runs + 1} cold starts, the gateway counted {counted}")
    mean = gw.metric_mean("edgefc_cold_start_seconds", name)
    return {
        "ms": times,
        "gateway_start_to_ready_mean_ms": round(mean * 1000, 1) if mean is not None else None,
    }


def _warm(gateways: dict[str, BenchGateway]) -> dict[str, list[float]]:
    """Sequential warm invokes of ``warm`` on each gateway, alternating rounds; milliseconds per sandbox."""
    for gw in gateways.values():
        gw.deploy([function("warm", memory_mb=128)], {"warm": HELLO}, version="warm")
        gw.invoke("warm", b"x")
    samples: dict[str, list[float]] = {k: [] for k in gateways}
    for _ in range(WARM_ROUNDS):
        for who, gw in gateways.items():
            out = run_loadgen(
                "latency", f"{gw.url}/v1/functions/warm/invoke", headers=gw.headers, n=WARM_N, warmup_n=100
            )
            if out["errors"]:
                raise RuntimeError(f"{who}: {out['errors']} failed warm invokes")
            samples[who] += out["ms"]
    return samples


def _cold_figure(
    cold: dict[str, Any], base: list[float], target: Target, baseline_what: str, **detail: Any
) -> dict[str, Any]:
    ms = cold["ms"]
    return figure(
        percentile(ms, 50), "ms", n=len(ms), target=target, baseline=percentile(base, 50), baseline_what=baseline_what,
        p90_ms=round(percentile(ms, 90), 1), max_ms=round(max(ms), 1),
        gateway_start_to_ready_mean_ms=cold["gateway_start_to_ready_mean_ms"],
        baseline_p90_ms=round(percentile(base, 90), 1), **detail,
    )  # fmt: skip


def _container_figures(process_gw: BenchGateway, stack: ExitStack) -> dict[str, dict[str, Any]]:
    ok, why = runc_baseline.available()
    if not ok:
        return {
            "cold_start_container_p50_ms": skipped("ms", f"containers unavailable: {why}", at_most(150)),
            "invoke_container_warm_p50_ms": skipped("ms", f"containers unavailable: {why}"),
        }
    log.info("baseline: bare runc run of python -c pass, %d runs", BASELINE_RUNS)
    runc_ms = runc_baseline.time_runc_runs(BASELINE_RUNS)
    box = stack.enter_context(BenchGateway(isolation="container"))
    log.info("container sandbox: %d cold starts (own netns via CNI)", COLD_RUNS)
    cold = _cold_starts(box, COLD_RUNS)
    log.info("container sandbox, host network: %d cold starts", HOST_NET_RUNS)
    host = _cold_starts(box, HOST_NET_RUNS, name="coldhost", container={"host_network": True})
    log.info("warm invokes: container vs process sandbox, %d rounds of %d", WARM_ROUNDS, WARM_N)
    warm = _warm({"container": box, "process": process_gw})
    process_p50 = percentile(warm["process"], 50)
    return {
        "cold_start_container_p50_ms": _cold_figure(
            cold, runc_ms, at_most(150), "bare `runc run` of `python -I -c pass` (same rootfs of ro bind mounts, "
            "host network) p50", networking="own network namespace (CNI bridge), as deployed by default",
            host_network_p50_ms=round(percentile(host["ms"], 50), 1), host_network_n=len(host["ms"]),
            host_network_gateway_start_to_ready_mean_ms=host["gateway_start_to_ready_mean_ms"],
        ),
        "invoke_container_warm_p50_ms": figure(
            percentile(warm["container"], 50), "ms", n=len(warm["container"]), target=at_most(round(process_p50 * WARM_SLACK, 3)),
            baseline=process_p50, baseline_what="process sandbox warm p50, same client, alternating rounds",
            p99_ms=round(percentile(warm["container"], 99), 2), baseline_p99_ms=round(percentile(warm["process"], 99), 2),
            target_rule="within 10 % of the process sandbox",
        ),
    }  # fmt: skip


def run() -> dict[str, dict[str, Any]]:
    """Measure the baselines, then cold starts in a process-isolation and a container-isolation gateway."""
    log.info("baseline: python -c pass, %d runs", BASELINE_RUNS)
    python_ms = _python_pass(BASELINE_RUNS)
    python_isolated_ms = _python_pass(BASELINE_RUNS, "-I", "-S")
    with ExitStack() as stack:
        gw = stack.enter_context(BenchGateway(isolation="process"))
        log.info("process sandbox: %d cold starts", COLD_RUNS)
        cold = _cold_starts(gw, COLD_RUNS)
        results = {
            "cold_start_process_p50_ms": _cold_figure(
                cold, python_ms, at_most(30), f"`{os.path.basename(sys.executable)} -c pass` start to exit p50",
                python_I_S_p50_ms=round(percentile(python_isolated_ms, 50), 1),
                how="idle_timeout_s 0.05; each invoke after the status shows no instance; client-side time",
            ),
        }  # fmt: skip
        results.update(_container_figures(gw, stack))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
