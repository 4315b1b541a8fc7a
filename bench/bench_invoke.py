"""Warm invoke over HTTP (latency, throughput) and idle memory, against a uvicorn hello-world in the same run.

- ``invoke_http_p50_ms`` / ``invoke_http_p99_ms``: sequential keep-alive POSTs from a separate client process
  to a warm on-demand ``hello`` (default settings), in rounds alternating with the baseline server so that both
  see the same machine noise.
- ``invoke_throughput_per_s``: 8 keep-alive connections from a separate client process for a fixed time, for
  several ``max_concurrency`` / ``max_instances`` settings a user might pick; the best is the figure, all are
  in ``detail``. The baseline runs before and after them; its mean is the reference.
- ``gateway_idle_rss_mib``: gateway RSS plus fork-server RSS after deploy and one invoke, idle.
- ``worker_idle_rss_mib``: USS (private memory) of one idle worker; RSS and PSS are in ``detail``.

Run alone with ``python -m bench.bench_invoke``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.figure import at_least, at_most, figure, percentile
from bench.gateway import BenchGateway, function
from bench.http_load import HelloServer, run_loadgen

log = logging.getLogger("bench.invoke")

HELLO = "def handler(event, context):\n    return b'hello'\n"
LATENCY_ROUNDS = 3
LATENCY_N = 1000  # per round and target: 3000 samples each
LATENCY_WARMUP = 200
CONCURRENCY = 8
DURATION_S = 4.0
# What a user tuning a trivial handler for throughput would try; the default (1, 1) comes first.
THROUGHPUT_SETTINGS: list[dict[str, int]] = [
    {"max_concurrency": 1, "max_instances": 1},
    {"max_concurrency": 8, "max_instances": 1},
    {"max_concurrency": 1, "max_instances": 2},
    {"max_concurrency": 4, "max_instances": 2},
]
MIB = 1024 * 1024


def _deploy_hello(gw: BenchGateway, **settings: int) -> None:
    gw.deploy([function("hello", memory_mb=128, timeout_s=10, max_queue=1000, **settings)], {"hello": HELLO})
    status, body = gw.invoke("hello", b"warm")
    if status != 200 or body != b"hello":
        raise RuntimeError(f"warm-up invoke failed: {status} {body[:200]!r}")


def _latency(gw: BenchGateway, base: HelloServer) -> dict[str, list[float]]:
    invoke_url = f"{gw.url}/v1/functions/hello/invoke"
    samples: dict[str, list[float]] = {"edgefc": [], "baseline": []}
    for round_no in range(LATENCY_ROUNDS):
        log.info("latency round %d/%d: %d sequential requests each", round_no + 1, LATENCY_ROUNDS, LATENCY_N)
        for who, url, headers in (("edgefc", invoke_url, gw.headers), ("baseline", base.url, {})):
            out = run_loadgen("latency", url, headers=headers, n=LATENCY_N, warmup_n=LATENCY_WARMUP)
            if out["errors"]:
                raise RuntimeError(f"{who}: {out['errors']} failed requests in the latency loop")
            samples[who] += out["ms"]
    return samples


def _rate(out: dict[str, Any]) -> float:
    if out["errors"]:
        raise RuntimeError(f"{out['errors']} failed requests under load")
    return float(out["requests"] / out["seconds"])


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process in ``pids``."""
    found = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        found[pid] = t.user + t.system
    return found


def _server_pids(gw: BenchGateway) -> tuple[list[int], list[int]]:
    """(the gateway and its fork server, the workers): where the CPU of an invoke is spent."""
    gateway = psutil.Process(gw.pid)
    servers = gateway.children()  # the fork server; the workers are its children (forks share its cmdline)
    workers = [w.pid for s in servers for w in s.children()]
    return [gateway.pid, *(s.pid for s in servers)], workers


def _measure(
    url: str, headers: dict[str, str], gateway: list[int], workers: Callable[[], list[int]]
) -> dict[str, Any]:
    """One throughput run, with the CPU microseconds per request that ``gateway`` and ``workers()`` spent."""
    before = _cpu_seconds(gateway + workers())
    out = run_loadgen("throughput", url, headers=headers, conc=CONCURRENCY, duration=DURATION_S)
    after = _cpu_seconds(gateway + workers())
    per_req = 1e6 / max(1, out["total_requests"])
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    return {
        "per_s": round(_rate(out)),
        "requests": out["requests"],
        "server_cpu_us_per_req": round(sum(used.get(p, 0.0) for p in gateway) * per_req, 1),
        "worker_cpu_us_per_req": round(sum(v for p, v in used.items() if p not in gateway) * per_req, 1),
        "client_cpu_us_per_req": round(out["client_cpu_s"] * 1e6 / max(1, out["requests"]), 1),
    }


def _throughput(gw: BenchGateway, base: HelloServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    invoke_url = f"{gw.url}/v1/functions/hello/invoke"
    log.info("throughput: uvicorn hello-world, %d connections, %g s", CONCURRENCY, DURATION_S)
    baseline = [_measure(base.url, {}, [base.pid], list)]
    runs: dict[str, Any] = {}
    for settings in THROUGHPUT_SETTINGS:
        key = f"max_concurrency={settings['max_concurrency']},max_instances={settings['max_instances']}"
        log.info("throughput: edgefc %s", key)
        _deploy_hello(gw, **settings)
        servers, _ = _server_pids(gw)
        runs[key] = _measure(invoke_url, gw.headers, servers, lambda: _server_pids(gw)[1])
        runs[key]["instances"] = len(gw.status("hello")["instances"])
    log.info("throughput: uvicorn hello-world again")
    baseline.append(_measure(base.url, {}, [base.pid], list))
    return runs, baseline


def _gateway_memory(gw: BenchGateway) -> dict[str, Any]:
    gateway = psutil.Process(gw.pid)
    servers = [p for p in gateway.children() if "edgefc.sandbox.forkserver" in " ".join(p.cmdline())]
    g, f = gateway.memory_full_info(), [p.memory_full_info() for p in servers]
    return {
        "gateway_rss_mib": round(g.rss / MIB, 1),
        "gateway_uss_mib": round(g.uss / MIB, 1),
        "forkserver_rss_mib": round(sum(m.rss for m in f) / MIB, 1),
        "forkserver_uss_mib": round(sum(m.uss for m in f) / MIB, 1),
        "total_rss_mib": (g.rss + sum(m.rss for m in f)) / MIB,
    }


def _worker_memory(gw: BenchGateway) -> dict[str, Any]:
    instances = gw.status("hello")["instances"]
    worker = psutil.Process(instances[0]["pid"])
    m = worker.memory_full_info()
    return {"uss_mib": m.uss / MIB, "rss_mib": round(m.rss / MIB, 1), "pss_mib": round(m.pss / MIB, 1)}


def _memory_figures(gw: BenchGateway) -> dict[str, dict[str, Any]]:
    time.sleep(1.0)  # let the deploy's garbage settle; nothing runs meanwhile
    gmem, wmem = _gateway_memory(gw), _worker_memory(gw)
    total = gmem.pop("total_rss_mib")
    return {
        "gateway_idle_rss_mib": figure(
            total, "MiB", n=1, target=at_most(60), baseline=128, baseline_what="Greengrass v1 core minimum (MB)",
            counted="RSS of the gateway process + RSS of its fork server, after deploy and one invoke, idle, "
                    "MQTT off (a managed Mosquitto is a separate process)",
            **gmem,
        ),
        "worker_idle_rss_mib": figure(
            wmem.pop("uss_mib"), "MiB", n=1, target=at_most(20),
            counted="USS (private pages) of one idle forked worker of `hello`; pages shared with the fork "
                    "server are not counted (see rss_mib / pss_mib)",
            **wmem,
        ),
    }  # fmt: skip


def run() -> dict[str, dict[str, Any]]:
    """Start a gateway (process isolation) and the baseline server, measure, stop both."""
    with BenchGateway(isolation="process") as gw, HelloServer() as base:
        _deploy_hello(gw)
        results = _memory_figures(gw)
        samples = _latency(gw, base)
        function_ms = gw.status("hello").get("duration_ms")
        runs, baseline = _throughput(gw, base)
    edge, ref = samples["edgefc"], samples["baseline"]
    n = len(edge)
    common = {"client": "http.client keep-alive loop in its own process", "rounds": LATENCY_ROUNDS,
              "settings": "on_demand, max_concurrency 1, max_instances 1", "gateway_duration_ms": function_ms}  # fmt: skip
    results["invoke_http_p50_ms"] = figure(
        percentile(edge, 50), "ms", n=n, target=at_most(1), baseline=percentile(ref, 50),
        baseline_what="uvicorn hello-world (raw ASGI, httptools, uvloop) p50, same client", **common,
    )  # fmt: skip
    results["invoke_http_p99_ms"] = figure(
        percentile(edge, 99), "ms", n=n, target=at_most(5), baseline=percentile(ref, 99),
        baseline_what="uvicorn hello-world p99, same client", max_ms=round(max(edge), 2), **common,
    )  # fmt: skip
    best = max(runs, key=lambda k: runs[k]["per_s"])
    results["invoke_throughput_per_s"] = figure(
        runs[best]["per_s"], "per_s", n=runs[best]["requests"], target=at_least(3000, ratio=0.4), concurrency=CONCURRENCY,
        baseline=sum(b["per_s"] for b in baseline) / len(baseline),
        baseline_what="uvicorn hello-world, same client and concurrency (mean of a run before and after)",
        best_settings=best, settings=runs, baseline_runs=baseline, duration_s=DURATION_S,
        client="asyncio (uvloop) keep-alive connections in one separate process",
        cpu="server_cpu_us_per_req: gateway + fork server (baseline: the uvicorn process); worker_cpu_us_per_req: "
            "the function's workers; both over the whole run including its 0.5 s warm-up",
    )  # fmt: skip
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
