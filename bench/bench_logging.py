"""A function logging 10 000 lines/s: what it costs the gateway, what is kept, and whether the others slow down.

One gateway (process isolation, default log settings: 2 000 lines/s per function kept), two functions:
``chatter`` prints ``RATE`` lines/s for ``duration_s`` (invoked async), ``hello`` answers at once. In the same
run, two windows of ``duration_s`` each with the same paced load on ``hello`` (``PACE_PER_S`` sync invokes/s
over one keep-alive connection from this process):

1. baseline: nothing logs;
2. logging: ``chatter`` logs meanwhile.

- ``logging_gateway_cpu_percent``: CPU time of the gateway process over the logging window / wall time
  (100 % = one core); baseline = the same over the baseline window, so the difference is what logging costs.
- ``logging_lines_kept`` / ``logging_lines_dropped``: the chatter's lines in the store, and the drops the
  gateway reported (its ``N lines dropped by the rate limit`` entries, every 10 s); kept + dropped = printed.
- ``invoke_p99_while_logging_ms``: p99 latency of ``hello`` in the logging window; baseline = without logging.

Run alone with ``python -m bench.bench_logging [SECONDS]`` (default 30).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import sys
import time
from typing import Any

import psutil

from bench.figure import at_most, figure, percentile
from bench.gateway import BenchGateway, function

log = logging.getLogger("bench.logging")

DURATION_S = 30.0
RATE = 10_000  # lines per second
PACE_PER_S = 200  # invokes of hello per second in each window
REPORT_WAIT_S = 12.0  # the store reports drops every 10 s

CHATTER = """
import time

def handler(event, context):
    duration, rate = (float(x) for x in event.split())
    total = int(duration * rate)
    t0 = time.monotonic()
    n = 0
    while n < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while n < due:
            print(f"chatter line {n} temperature=21.5 humidity=40 status=ok")
            n += 1
        time.sleep(0.002)
    return {"lines": n, "seconds": time.monotonic() - t0}
"""
HELLO = "def handler(event, context):\n    return b'hello'\n"


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _paced_invokes(gw: BenchGateway, duration_s: float) -> tuple[list[float], int]:
    """``hello`` every 1/PACE_PER_S s for ``duration_s``; returns (latencies in ms, failed invokes)."""
    samples: list[float] = []
    errors = 0
    step = 1.0 / PACE_PER_S
    start = time.perf_counter()
    next_at = start
    while (now := time.perf_counter()) - start < duration_s:
        if now < next_at:
            time.sleep(next_at - now)  # pacing the load, not waiting for the gateway
        next_at += step
        t0 = time.perf_counter()
        status, body = gw.invoke("hello")
        samples.append((time.perf_counter() - t0) * 1000)
        if status != 200 or body != b"hello":
            errors += 1
    return samples, errors


def _window(gw: BenchGateway, duration_s: float) -> dict[str, Any]:
    gateway = psutil.Process(gw.pid)
    cpu0, wall0 = _cpu_seconds(gateway), time.perf_counter()
    latencies, errors = _paced_invokes(gw, duration_s)
    cpu, wall = _cpu_seconds(gateway) - cpu0, time.perf_counter() - wall0
    return {"cpu_s": cpu, "wall_s": wall, "cpu_percent": cpu / wall * 100, "ms": latencies, "errors": errors}


def _invocation(gw: BenchGateway, inv_id: str) -> dict[str, Any] | None:
    found = gw._admin().get(f"/v1/invocations/{inv_id}").json()
    return found if found["state"] in ("succeeded", "failed") else None


def _kept(gw: BenchGateway) -> int:
    """The chatter's lines in the store: one API query first (it flushes the store), then a count in SQL."""
    response = gw._admin().get("/v1/functions/chatter/logs", params={"limit": 1})
    if response.status_code != 200:
        raise RuntimeError(f"log query failed: {response.status_code} {response.text}")
    conn = sqlite3.connect(f"file:{gw.data_dir / 'logs.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM logs WHERE function = 'chatter' AND message LIKE 'chatter line %'"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


def _reported_drops(gw: BenchGateway) -> int:
    entries = (
        gw._admin()
        .get("/v1/functions/chatter/logs", params={"q": "dropped by the rate limit", "limit": 10000})
        .json()["entries"]
    )
    found = (re.match(r"(\d+) lines dropped", e["message"]) for e in entries if e["stream"] == "gateway")
    return sum(int(m.group(1)) for m in found if m)


def run(duration_s: float = DURATION_S) -> dict[str, dict[str, Any]]:
    """Measure on a fresh process-isolation gateway; ``duration_s`` is each window's length."""
    with BenchGateway(isolation="process", prefix="edgefc-bench-logging-") as gw:
        gw.deploy(
            [function("chatter", timeout_s=duration_s + 60, memory_mb=128), function("hello", memory_mb=128)],
            {"chatter": CHATTER, "hello": HELLO},
        )
        for _ in range(200):  # warm: instance started, connection open, code paths hot
            gw.invoke("hello")
        log.info("baseline window: %.0f s of hello at %d/s, nothing logging", duration_s, PACE_PER_S)
        baseline = _window(gw, duration_s)

        log.info("logging window: chatter prints %d lines/s for %.0f s meanwhile", RATE, duration_s)
        response = gw._admin().post(
            "/v1/functions/chatter/invoke",
            content=f"{duration_s} {RATE}".encode(),
            headers={"X-Edgefc-Invocation-Type": "async"},
        )
        if response.status_code != 202:
            raise RuntimeError(f"async invoke of chatter: {response.status_code} {response.text}")
        inv_id = response.json()["invocation_id"]
        # The window starts when chatter's first line is in the store (cold start excluded).
        gw.wait_for(lambda: _kept(gw) > 0, timeout=30, what="chatter's first line", interval=0.005)
        logging_ = _window(gw, duration_s)
        done = gw.wait_for(lambda: _invocation(gw, inv_id), timeout=duration_s + 60, what="chatter to finish")
        if done["state"] != "succeeded":
            raise RuntimeError(f"chatter failed: {done['error']}")
        result = json.loads(base64.b64decode(done["result_base64"]))
        printed, chatter_s = int(result["lines"]), float(result["seconds"])
        kept = _kept(gw)
        deadline = time.monotonic() + REPORT_WAIT_S
        dropped = _reported_drops(gw)
        while kept + dropped < printed and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the next periodic report
            dropped = _reported_drops(gw)
        db_mib = sum(p.stat().st_size for p in gw.data_dir.glob("logs.db*")) / 2**20

    base_p99 = percentile(baseline["ms"], 99)
    log_p99 = percentile(logging_["ms"], 99)
    common: dict[str, Any] = {
        "window_s": duration_s,
        "rate_lines_per_s": RATE,
        "printed": printed,
        "chatter_s": round(chatter_s, 2),
    }
    return {
        "logging_gateway_cpu_percent": figure(
            logging_["cpu_percent"],
            "percent",
            n=1,
            baseline=baseline["cpu_percent"],
            baseline_what="gateway CPU % with the same hello load, nothing logging",
            logging_cost_percent=round(logging_["cpu_percent"] - baseline["cpu_percent"], 1),
            gateway_cpu_s=round(logging_["cpu_s"], 2),
            counted="CPU time of the gateway process / wall time (100 % = one core)",
            **common,
        ),
        "logging_lines_kept": figure(
            kept,
            "lines",
            n=1,
            kept_per_s=round(kept / chatter_s),
            rate_limit_lines_per_s=2000,
            logs_db_mib=round(db_mib, 1),
            **common,
        ),
        "logging_lines_dropped": figure(
            dropped,
            "lines",
            n=1,
            dropped_fraction=round(dropped / printed, 3) if printed else None,
            accounted=kept + dropped == printed,
            unaccounted=printed - kept - dropped,
            **common,
        ),
        "invoke_p99_while_logging_ms": figure(
            log_p99,
            "ms",
            n=len(logging_["ms"]),
            target=at_most(5.0),
            baseline=base_p99,
            baseline_what="p99 of hello in the same run with nothing logging",
            p50_ms=round(percentile(logging_["ms"], 50), 3),
            baseline_p50_ms=round(percentile(baseline["ms"], 50), 3),
            errors=logging_["errors"] + baseline["errors"],
            invokes_per_s=PACE_PER_S,
            target_source="DESIGN §6 warm invoke p99",
            **common,
        ),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else DURATION_S), indent=2))
