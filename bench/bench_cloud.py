"""Cloud deploy fan-out: N simulated gateways, one deploy each, until every one reported ``succeeded``.

``cloud_deploy_fanout_s`` (value: N = 1000, ``detail.per_n``: each N): time from the first deploy call until
the last simulated gateway's ``succeeded`` report was accepted. A simulated gateway is the agent's protocol in
asyncio (long poll, fetch the artifact and check its sha256, report downloading → applying → succeeded), so the
cloud does exactly what real gateways make it do. With root and PostgreSQL the gateways are spread across two
replicas on one throwaway cluster (as DESIGN §6 asks); else one replica on SQLite.
``detail.cpu_ms_per_gateway``: CPU the replicas and the database spent during each fan-out, per gateway (less
at the mercy of a shared machine's load than the seconds are).
``cloud_idle_rss_mib`` / ``cloud_idle_cpu_percent``: the replicas with 1000 gateways idle in their long polls.
Run alone with ``python -m bench.bench_cloud``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tests.cloud.harness import CloudProcess
from tests.cloud.postgres import PostgresCluster

from bench.figure import at_most, figure
from bench.http11 import Connection

log = logging.getLogger("bench.cloud")

SIZES = (10, 100, 1000)
IDLE_SECONDS = 5.0


class SimGateway:
    """One simulated gateway speaking the agent's protocol on its own connection."""

    def __init__(self, url: str, instance: str, token: str) -> None:
        self.http = Connection(url, {"Authorization": f"Bearer {token}", "X-Edgefc-Instance": instance})
        self.done_at: float | None = None
        self.applied = 0
        self.polling = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                self.polling.set()
                _, raw = await self.http.request("GET", "/v1/agent/desired", params={"after": self.applied, "wait": 25})
                deployment = json.loads(raw).get("deployment")
                if deployment:
                    await self._apply(deployment)
        finally:
            await self.http.close()

    async def _apply(self, deployment: dict[str, Any]) -> None:
        number = deployment["number"]
        await self._report(number, "downloading")
        for sha in deployment["artifacts"].values():
            _, data = await self.http.request("GET", f"/v1/agent/artifacts/{sha}")
            if hashlib.sha256(data).hexdigest() != sha:
                raise RuntimeError(f"artifact {sha} does not match its hash")
        await self._report(number, "applying")
        await self._report(number, "succeeded")
        self.applied = number
        self.done_at = time.perf_counter()

    async def _report(self, number: int, stage: str) -> None:
        await self.http.request("POST", "/v1/agent/report", json={"deployment": number, "stage": stage,
                                                                  "message": stage, "time": time.time()})  # fmt: skip


async def _admin_all(clouds: list[CloudProcess], method: str, paths: list[str], body: Any = None,
                     workers: int = 32) -> list[Any]:  # fmt: skip
    """The same admin call on each path, from ``workers`` connections spread over the replicas (as a load
    balancer would); returns the JSON answers in order."""
    jobs = list(enumerate(paths))
    out: list[Any] = [None] * len(paths)

    async def worker(cloud: CloudProcess) -> None:
        http = Connection(cloud.url, {"Authorization": f"Bearer {cloud.token}"})
        try:
            while jobs:
                index, path = jobs.pop()
                _, raw = await http.request(method, path, json=body(index) if callable(body) else body)
                out[index] = json.loads(raw) if raw else None
        finally:
            await http.close()

    await asyncio.gather(*(worker(clouds[i % len(clouds)]) for i in range(workers)))
    return out


def _processes(replicas: list[CloudProcess], cluster: PostgresCluster | None) -> dict[str, list[psutil.Process]]:
    """The replicas' processes, and the database's (the postmaster and its backends) when it is PostgreSQL."""
    out = {"replicas": [psutil.Process(r.proc.pid) for r in replicas if r.proc is not None], "database": []}
    if cluster is not None:
        postmaster = psutil.Process(int((cluster.dir / "data" / "postmaster.pid").read_text().split()[0]))
        out["database"] = [postmaster, *postmaster.children(recursive=True)]
    return out


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def _round(replicas: list[CloudProcess], n: int, idle_figures: dict[str, float] | None,
                 cpu: dict[str, float], cluster: PostgresCluster | None) -> float:  # fmt: skip
    """Make n instances, connect n simulated gateways (spread over the replicas), deploy to all; returns seconds.

    ``cpu`` gets the milliseconds of CPU per gateway the replicas and the database spent during the fan-out.
    """
    made = await _admin_all(replicas, "POST", ["/v1/instances"] * n, lambda i: {"name": f"sim-{i}"})
    await _admin_all(replicas, "PUT", [f"/v1/instances/{m['id']}/assignments/hello" for m in made], {"version": 1})
    sims = [SimGateway(replicas[i % len(replicas)].url, m["id"], m["token"]) for i, m in enumerate(made)]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(s.run()) for s in sims]
        await asyncio.gather(*(s.polling.wait() for s in sims))
        await asyncio.sleep(0.5)  # every first poll reaches its wait (a poll that has not still sees the deploy)
        procs = _processes(replicas, cluster)
        before = {name: _cpu_seconds(group) for name, group in procs.items()}
        log.info("deploying to %d gateways", n)
        t0 = time.perf_counter()
        await _admin_all(replicas, "POST", [f"/v1/instances/{m['id']}/deployments" for m in made], workers=64)
        while any(s.done_at is None for s in sims):
            await asyncio.sleep(0.05)
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{sum(s.done_at is None for s in sims)} of {n} gateways did not finish in 120 s")
        seconds = max(s.done_at for s in sims if s.done_at is not None) - t0
        for name, group in procs.items():
            if group:
                cpu[name] = round(1000 * (_cpu_seconds(group) - before[name]) / n, 2)
        if idle_figures is not None:
            idle_figures.update(await _idle(replicas))
        for task in tasks:
            task.cancel()
    return seconds


async def _idle(replicas: list[CloudProcess]) -> dict[str, float]:
    """RSS and CPU of the replicas while every simulated gateway waits in its long poll."""
    await asyncio.sleep(1.0)
    procs = [psutil.Process(r.proc.pid) for r in replicas if r.proc is not None]
    before = [p.cpu_times() for p in procs]
    await asyncio.sleep(IDLE_SECONDS)
    after = [p.cpu_times() for p in procs]
    cpu = sum((a.user + a.system) - (b.user + b.system) for a, b in zip(after, before, strict=True))
    return {"rss_mib": sum(p.memory_info().rss for p in procs) / (1 << 20), "cpu_percent": 100 * cpu / IDLE_SECONDS}


def run(sizes: tuple[int, ...] = SIZES) -> dict[str, dict[str, Any]]:
    """Run every size against fresh replicas; returns the CONTRACT §8 figures."""
    cluster: PostgresCluster | None = None
    if os.geteuid() == 0:
        try:
            cluster = PostgresCluster().start()
        except BaseException as exc:  # noqa: BLE001 — pytest's skip is BaseException; fall back to SQLite
            log.warning("no PostgreSQL cluster (%s); one replica on SQLite", exc)
            cluster = None
    work = Path(tempfile.mkdtemp(prefix="edgefc-bench-cloud-"))
    count = 2 if cluster else 1
    replicas = [CloudProcess(work / f"replica-{i}", db=cluster.url if cluster else None) for i in range(count)]
    per_n: dict[str, float] = {}
    cpu_ms: dict[str, dict[str, float]] = {}
    idle: dict[str, float] = {}
    try:
        for replica in replicas:
            replica.start()
        replicas[0].function("hello", {"index.py": "def handler(event, context):\n    return b'hi'\n"})
        for n in sizes:
            cpu_ms[str(n)] = {}
            seconds = asyncio.run(_round(replicas, n, idle if n == max(sizes) else None, cpu_ms[str(n)], cluster))
            per_n[str(n)] = round(seconds, 3)
            log.info("fan-out to %d gateways: %.2f s; CPU ms per gateway %s", n, per_n[str(n)], cpu_ms[str(n)])
    finally:
        for replica in replicas:
            replica.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    top = str(max(sizes))
    setup = f"{count} replica(s) on {'PostgreSQL' if cluster else 'SQLite'}"
    load = round(os.getloadavg()[0], 1)  # this machine is shared: a busy one stretches every figure here
    return {
        "cloud_deploy_fanout_s": figure(per_n[top], "s", n=max(sizes), target=at_most(10.0), per_n=per_n, setup=setup,
                                        cpu_ms_per_gateway=cpu_ms, load_average=load),  # fmt: skip
        "cloud_idle_rss_mib": figure(round(idle["rss_mib"], 1), "MiB", n=max(sizes), gateways=max(sizes), setup=setup),
        "cloud_idle_cpu_percent": figure(round(idle["cpu_percent"], 1), "percent", n=max(sizes), gateways=max(sizes),
                                         seconds=IDLE_SECONDS, setup=setup),  # fmt: skip
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
