"""A noisy neighbour: one function's invoke p99 while another burns CPU, forks, floods logs, or while a client
holds idle connections, against the same p99 with nothing beside it (DESIGN §6: at most 3×).

The victim is a trivial function invoked sequentially over HTTP (``loadgen.py latency``). The neighbour runs
as deployed by default: in a container where runc can run (with ``cpu: 0.5``, the quota this wave added), in
the process sandbox otherwise (where no CPU quota applies: the figure then shows what that costs). Each noise
runs as an async invocation that lasts the whole measurement. The quiet p99 is measured before and after the
noisy rounds, and their mean is the baseline, so a machine that got busier meanwhile shows up in ``detail``.

- ``noisy_neighbour_p99_ratio``: the worst noisy p99 / the quiet p99; per noise, its p99 and ratio in
  ``detail``.

Run alone with ``python -m bench.bench_noisy``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

from bench import runc_baseline
from bench.figure import at_most, figure, percentile
from bench.gateway import BenchGateway, function
from bench.http_load import run_loadgen

log = logging.getLogger("bench.noisy")

VICTIM = "def handler(event, context):\n    return b'ok'\n"
NOISY = r"""
import os, time

def _spin(end):
    while time.monotonic() < end:
        pass

def handler(event, context):
    kind, seconds = event.decode().split(":")
    end = time.monotonic() + float(seconds)
    n = 0
    if kind == "cpu":  # three busy processes for two cores
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                _spin(end)
                os._exit(0)
            children.append(pid)
        _spin(end)
        for pid in children:
            os.waitpid(pid, 0)
    elif kind == "fork":
        while time.monotonic() < end:
            try:
                pid = os.fork()
            except OSError:
                time.sleep(0.001)
                continue
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            n += 1
    elif kind == "logs":
        while time.monotonic() < end:
            print(f"flood line {n} " + "x" * 100)
            n += 1
    return str(n)
"""
N = 1500  # sequential invokes per measurement: the p99 is the 15th slowest
WARMUP = 100
NOISE_S = 15.0  # longer than one measurement, even on a loaded machine
IDLE_CONNECTIONS = 800
NOISES = ("cpu", "fork", "logs", "idle_connections")


def _measure(gw: BenchGateway) -> list[float]:
    out = run_loadgen(
        "latency", f"{gw.url}/v1/functions/victim/invoke", headers=gw.headers, n=N, warmup_n=WARMUP
    )
    if out["errors"]:
        raise RuntimeError(f"{out['errors']} failed invokes of the victim")
    return out["ms"]  # type: ignore[no-any-return]


def _start_noise(gw: BenchGateway, kind: str) -> str:
    assert gw.admin is not None
    response = gw.admin.post(
        "/v1/functions/noisy/invoke",
        content=f"{kind}:{NOISE_S}".encode(),
        headers={"X-Edgefc-Invocation-Type": "async"},
    )
    if response.status_code != 202:
        raise RuntimeError(f"starting the {kind} noise: {response.status_code} {response.text}")
    invocation: str = response.json()["invocation_id"]
    gw.wait_for(lambda: _state(gw, invocation) == "running", timeout=30, what=f"the {kind} noise to run")
    time.sleep(0.3)  # let it ramp up (forks, log backlog) before measuring
    return invocation


def _state(gw: BenchGateway, invocation: str) -> str:
    assert gw.admin is not None
    return str(gw.admin.get(f"/v1/invocations/{invocation}").json().get("state"))


def _idle_connections(gw: BenchGateway, count: int) -> list[socket.socket]:
    """``count`` connections that never send a request, from another client address than the victim's (the
    gateway keeps each client address to ``limits.connections_per_client``: past it, this client's are refused)."""
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    source = ("127.0.0.2", 0) if host == "127.0.0.1" else None
    return [socket.create_connection((host, int(port)), source_address=source) for _ in range(count)]


def run() -> dict[str, dict[str, Any]]:
    """Quiet p99, then the p99 under each noise, then quiet again; the worst ratio is the figure."""
    containers, why = runc_baseline.available()
    isolation = "container" if containers else "process"
    noisy_settings: dict[str, Any] = {"timeout_s": 60, "memory_mb": 256}
    if containers:
        noisy_settings["cpu"] = 0.5
    with BenchGateway(isolation=isolation) as gw:
        gw.deploy(
            [function("victim", memory_mb=128), function("noisy", **noisy_settings)],
            {"victim": VICTIM, "noisy": NOISY},
        )
        gw.invoke("victim")
        quiet_before = percentile(_measure(gw), 99)
        per_noise: dict[str, dict[str, float]] = {}
        for kind in NOISES:
            log.info("victim p99 beside %s", kind)
            if kind == "idle_connections":
                held = _idle_connections(gw, IDLE_CONNECTIONS)
                try:
                    ms = _measure(gw)
                finally:
                    for s in held:
                        s.close()
            else:
                invocation = _start_noise(gw, kind)
                ms = _measure(gw)
                if _state(gw, invocation) != "running":
                    log.warning("the %s noise ended before the measurement did", kind)
                gw.wait_for(lambda inv=invocation: _state(gw, inv) in ("succeeded", "failed"), timeout=60,
                            what=f"the {kind} noise to end")  # fmt: skip
            per_noise[kind] = {"p99_ms": round(percentile(ms, 99), 3), "p50_ms": round(percentile(ms, 50), 3)}
        quiet_after = percentile(_measure(gw), 99)
    quiet = (quiet_before + quiet_after) / 2
    for figures in per_noise.values():
        figures["ratio"] = round(figures["p99_ms"] / quiet, 2)
    worst = max(per_noise, key=lambda k: per_noise[k]["ratio"])
    return {
        "noisy_neighbour_p99_ratio": figure(
            per_noise[worst]["ratio"], "ratio", n=N, target=at_most(3),
            worst=worst, quiet_p99_ms=round(quiet, 3), quiet_p99_before_ms=round(quiet_before, 3),
            quiet_p99_after_ms=round(quiet_after, 3), noises=per_noise, isolation=isolation,
            neighbour_cpu_quota=noisy_settings.get("cpu"), idle_connections=IDLE_CONNECTIONS,
            note=None if containers else f"containers unavailable ({why}): no CPU quota on the neighbour",
        )
    }  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
