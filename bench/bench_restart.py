"""Crash to serving again: how long a continuous function is unavailable after its worker is SIGKILLed.

``restart_to_serving_ms``: SIGKILL the worker of a continuous function, then invoke it in a loop until one
invoke succeeds; the figure is the time from the kill to that success (the first restart, which the restart
policy makes immediate). Between runs the function is restarted through ``POST /v1/functions/{name}/restart``,
which resets the crash-loop counter, so every run sees a first crash rather than a backoff.

Run alone with ``python -m bench.bench_restart``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

from bench.figure import at_most, figure, percentile
from bench.gateway import BenchGateway, function

log = logging.getLogger("bench.restart")

RUNS = 10
KEEPER = "def handler(event, context):\n    return b'alive'\n"


def _serving_pid(gw: BenchGateway) -> int | None:
    status = gw.status("keeper")
    ready = [i for i in status["instances"] if i["state"] == "ready"]
    if status["state"] != "running" or not ready:
        return None
    return int(ready[0]["pid"])


def _one_crash(gw: BenchGateway) -> tuple[float, list[int], int]:
    """Kill the worker; returns (ms until an invoke succeeded, statuses of failed invokes meanwhile, old pid)."""
    gw.restart("keeper")
    pid = gw.wait_for(lambda: _serving_pid(gw), what="keeper running")
    status, _ = gw.invoke("keeper", b"before")
    if status != 200:
        raise RuntimeError(f"keeper does not answer before the crash: {status}")
    failed: list[int] = []
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        status, body = gw.invoke("keeper", b"after")
        if status == 200 and body == b"alive":
            return (time.perf_counter() - t0) * 1000, failed, pid
        failed.append(status)
        if time.perf_counter() - t0 > 30:
            raise RuntimeError(
                f"keeper did not serve again within 30 s (last answer {status} {body[:300]!r})"
            )


def run(runs: int = RUNS) -> dict[str, dict[str, Any]]:
    """Deploy a continuous ``keeper`` on a process-isolation gateway and crash it ``runs`` times."""
    with BenchGateway(isolation="process") as gw:
        gw.deploy([function("keeper", mode="continuous", memory_mb=128)], {"keeper": KEEPER})
        times: list[float] = []
        failures: list[list[int]] = []
        log.info("keeper: %d SIGKILLs of its worker", runs)
        for _ in range(runs):
            ms, failed, old_pid = _one_crash(gw)
            times.append(ms)
            failures.append(failed)
            new_pid = _serving_pid(gw)
            if new_pid == old_pid:
                raise RuntimeError("the same worker pid answered after SIGKILL")
        status = gw.status("keeper")
    return {
        "restart_to_serving_ms": figure(
            percentile(times, 50), "ms", n=len(times), target=at_most(200),
            max_ms=round(max(times), 1), failed_invoke_statuses_per_crash=failures, restarts_counted=status["restarts"],
            last_exit=status["last_exit"],
            how="SIGKILL the worker pid, invoke in a loop until 200; POST restart between runs resets the policy",
        ),
    }  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
