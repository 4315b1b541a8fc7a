"""Node.js functions: cold start, warm invoke over HTTP and idle worker memory, each with its baseline.

- ``node_cold_start_p50_ms``: an on-demand Node.js function with ``idle_timeout_s: 0.05``, each invoke after the
  status shows no instance (client-side time, kept-alive connection), against ``node -e 0`` start to exit
  right before each cold start (target <= 2x). ``detail`` also has what loading the worker's own modules adds
  to a bare ``node -e 0`` (alternating runs): what a ``--snapshot-blob`` could save at most.
- ``node_invoke_http_p50_ms``: sequential warm invokes of a trivial Node.js handler, in rounds alternating with
  the same handler in Python on the same gateway (target <= 1.2x the Python p50).
- ``node_worker_idle_rss_mib``: RSS of one idle Node.js worker (USS and PSS in ``detail``) against a bare idle
  ``node`` process; a Node.js worker is its own process (no fork server to share pages with), so RSS is the
  honest figure, and the 20 MiB per-worker target of DESIGN §6 (made for forked Python workers) is out of reach
  for any Node.js process.

Run alone with ``python -m bench node`` or ``python -m bench.bench_node``.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
import zipfile
from typing import Any

import psutil
import yaml

from bench.figure import Target, at_most, figure, percentile, skipped
from bench.gateway import BenchGateway, GatewayError, function
from bench.http_load import run_loadgen
from edgefc.node import HERE as NODE_DIR
from edgefc.node import find_node, node_version

log = logging.getLogger("bench.node")

NODE_HELLO = "exports.handler = (event, context, callback) => callback(null, 'hello');\n"
PY_HELLO = "def handler(event, context):\n    return b'hello'\n"
COLD_RUNS = 30
BASELINE_RUNS = 30
LATENCY_ROUNDS = 6  # many short rounds, alternating Node.js and Python: both see the same machine noise
LATENCY_N = 500
LATENCY_WARMUP = 200
MIB = 1024 * 1024
FIGURES = ("node_cold_start_p50_ms", "node_invoke_http_p50_ms", "node_worker_idle_rss_mib")


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _deploy(gw: BenchGateway, functions: list[dict[str, Any]], sources: dict[str, dict[str, str]], version: str) -> None:
    """Deploy ``functions`` with code ``{name: {file: text}}`` (BenchGateway.deploy knows only index.py)."""
    assert gw.admin is not None
    manifest = yaml.safe_dump({"version": version, "functions": functions}).encode()
    files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", manifest, "application/yaml"))]
    files += [(name, (f"{name}.zip", _zip(tree), "application/zip")) for name, tree in sources.items()]
    response = gw.admin.put("/v1/deployment", files=files)
    if response.status_code != 200:
        raise GatewayError(f"deploy failed ({response.status_code}): {response.text}\n{gw.log_tail()}")


def _time_runs(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _cold_starts(gw: BenchGateway, runs: int, node: str) -> dict[str, Any]:
    """Time ``runs`` cold invokes, each right after a ``node -e 0`` run, so both see the same machine noise."""
    _deploy(gw, [function("ncold", runtime="nodejs20", memory_mb=128, idle_timeout_s=0.05)], {"ncold": {"index.js": NODE_HELLO}}, "cold")
    gw.invoke("ncold", b"warm the connection")
    times: list[float] = []
    baseline: list[float] = []
    for _ in range(runs):
        gw.wait_for(lambda: not gw.status("ncold")["instances"], timeout=30, what="the idle instance to stop")
        baseline += _time_runs([node, "-e", "0"], 1)
        t0 = time.perf_counter()
        status, body = gw.invoke("ncold", b"x")
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200 or body != b"hello":
            raise RuntimeError(f"cold invoke failed: {status} {body[:300]!r}")
    counted = gw.status("ncold")["cold_starts"]
    if counted < runs + 1:
        raise RuntimeError(f"expected {runs + 1} cold starts, the gateway counted {counted}")
    mean = gw.metric_mean("edgefc_cold_start_seconds", "ncold")
    return {"ms": times, "baseline_ms": baseline,
            "gateway_start_to_ready_mean_ms": round(mean * 1000, 1) if mean is not None else None}


def _warm(gw: BenchGateway, rounds: int, n: int, warmup: int) -> dict[str, list[float]]:
    _deploy(gw, [function("nhello", runtime="nodejs20", memory_mb=128), function("pyhello", memory_mb=128)],
            {"nhello": {"index.js": NODE_HELLO}, "pyhello": {"index.py": PY_HELLO}}, "warm")  # fmt: skip
    samples: dict[str, list[float]] = {"nhello": [], "pyhello": []}
    for name in samples:
        status, body = gw.invoke(name, b"x")
        if status != 200 or body != b"hello":
            raise RuntimeError(f"warm-up invoke of {name} failed: {status} {body[:300]!r}")
    for round_no in range(rounds):
        log.info("latency round %d/%d: %d sequential invokes each of Node.js and Python", round_no + 1, rounds, n)
        for name in samples:
            out = run_loadgen("latency", f"{gw.url}/v1/functions/{name}/invoke", headers=gw.headers, n=n,
                              warmup_n=warmup)  # fmt: skip
            if out["errors"]:
                raise RuntimeError(f"{name}: {out['errors']} failed invokes")
            samples[name] += out["ms"]
    return samples


def _idle_memory(gw: BenchGateway) -> dict[str, Any]:
    time.sleep(1.0)  # let the worker's start-up garbage settle; nothing runs meanwhile
    instances = gw.status("nhello")["instances"]
    m = psutil.Process(instances[0]["pid"]).memory_full_info()
    return {"rss_mib": m.rss / MIB, "uss_mib": round(m.uss / MIB, 1), "pss_mib": round(m.pss / MIB, 1)}


def _bare_node_rss(node: str) -> float:
    """RSS (MiB) of a bare idle ``node`` process: what any Node.js process costs before the worker adds to it."""
    with subprocess.Popen([node, "-e", "setInterval(() => {}, 1e6); console.log('up')"], stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            time.sleep(1.0)  # the same settling time as the worker gets
            return float(psutil.Process(proc.pid).memory_info().rss / MIB)
        finally:
            proc.kill()


def run(*, cold_runs: int = COLD_RUNS, baseline_runs: int = BASELINE_RUNS, rounds: int = LATENCY_ROUNDS,
        latency_n: int = LATENCY_N, warmup: int = LATENCY_WARMUP) -> dict[str, dict[str, Any]]:
    """Measure ``node -e 0``, then cold starts, warm invokes (vs Python) and idle memory on one gateway."""
    node = find_node()
    version = node_version(node) if node else None
    if node is None or version is None or not (NODE_DIR / "node_modules" / "@msgpack").is_dir():
        why = "node is not installed" if node is None else "the Node.js worker's npm packages are missing (make install)"
        targets: dict[str, Target | None] = {"node_cold_start_p50_ms": None, "node_invoke_http_p50_ms": None,
                                             "node_worker_idle_rss_mib": at_most(20)}  # fmt: skip
        return {name: skipped("MiB" if name.endswith("mib") else "ms", why, targets[name]) for name in FIGURES}
    bare_rss = _bare_node_rss(node)
    modules = ";".join(f"require({json.dumps(str(NODE_DIR / 'lib' / m))})" for m in ("protocol", "logs", "errors", "runtime"))
    loaded_ms, bare_ms = [], []
    for _ in range(baseline_runs):  # alternating, so the difference is the modules' and not the machine's
        loaded_ms += _time_runs([node, "-e", f"{modules};require('net')"], 1)
        bare_ms += _time_runs([node, "-e", "0"], 1)
    with BenchGateway(isolation="process") as gw:
        log.info("Node.js cold starts: %d", cold_runs)
        cold = _cold_starts(gw, cold_runs, node)
        warm = _warm(gw, rounds, latency_n, warmup)
        memory = _idle_memory(gw)
    node_p50, cold_ms = percentile(cold["baseline_ms"], 50), cold["ms"]
    py_p50 = percentile(warm["pyhello"], 50)
    shown = "v" + ".".join(map(str, version))
    return {
        "node_cold_start_p50_ms": figure(
            percentile(cold_ms, 50), "ms", n=len(cold_ms), target=Target("<=", 2 * node_p50), baseline=node_p50,
            baseline_what=f"`node -e 0` start to exit p50 ({shown}), one run before each cold start",
            target_rule="<= 2x node -e 0",
            p90_ms=round(percentile(cold_ms, 90), 1), max_ms=round(max(cold_ms), 1),
            gateway_start_to_ready_mean_ms=cold["gateway_start_to_ready_mean_ms"],
            worker_modules_cost_p50_ms=round(percentile(loaded_ms, 50) - percentile(bare_ms, 50), 1),
            how="plain spawn: the fork server forks, sets the instance up (cgroup, env, session), execs node",
        ),
        "node_invoke_http_p50_ms": figure(
            percentile(warm["nhello"], 50), "ms", n=len(warm["nhello"]), target=Target("<=", 1.2 * py_p50),
            baseline=py_p50, baseline_what="the same trivial handler in Python, same gateway, alternating rounds",
            target_rule="<= 1.2x the Python function", p99_ms=round(percentile(warm["nhello"], 99), 2),
            baseline_p99_ms=round(percentile(warm["pyhello"], 99), 2),
        ),
        "node_worker_idle_rss_mib": figure(
            memory.pop("rss_mib"), "MiB", n=1, target=at_most(20), node=shown, baseline=bare_rss,
            baseline_what="RSS of a bare idle `node -e` process (same binary)",
            counted="RSS of one idle Node.js worker (its own process: nothing shared with a fork server)", **memory,
        ),
    }  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
