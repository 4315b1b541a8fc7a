"""Hot deploy from the cloud under load: a new version of an on-demand function while it is invoked nonstop.

``cloud_hot_deploy_failed_invocations``: invocations that did not answer 200 from the deploy call until a
second after the gateway reported ``succeeded`` (target 0). ``cloud_hot_deploy_p99_ms``: the p99 latency in
that window, with the p99 of the same load before the deploy as its baseline (the ratio is the switch's cost).
A real cloud and a real gateway with its agent (process isolation). Run alone with
``python -m bench.bench_cloud_hot``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tests.cloud.harness import AgentGatewayProcess, CloudProcess

from bench.figure import at_most, figure, percentile

CLIENTS = 2
BEFORE_S = 3.0
AFTER_S = 1.0


def _load(url: str, token: str, stop: threading.Event, out: list[tuple[float, float, int]]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            status = client.post("/v1/functions/hello/invoke", content=b"x").status_code
            out.append((t0, time.perf_counter() - t0, status))


def run() -> dict[str, dict[str, Any]]:
    """One hot deploy of version 2 under CLIENTS nonstop invokers."""
    work = Path(tempfile.mkdtemp(prefix="edgefc-bench-hot-"))
    cloud = CloudProcess(work / "cloud").start()
    gw: AgentGatewayProcess | None = None
    stop = threading.Event()
    samples: list[tuple[float, float, int]] = []
    threads: list[threading.Thread] = []
    try:
        inst = cloud.api("POST", "/v1/instances", 201, json={"name": "bench"})
        for text in ("v1", "v2"):
            cloud.function("hello", {"index.py": f"def handler(event, context):\n    return b'{text}'\n"})
        path = f"/v1/instances/{inst['id']}"
        cloud.api("PUT", f"{path}/assignments/hello", 200, json={"version": 1, "max_instances": 2, "max_concurrency": 2})
        gw = AgentGatewayProcess(work / "gw", cloud_url=cloud.url, instance=inst["id"], token=inst["token"]).start()
        cloud.api("POST", f"{path}/deployments", 201)
        cloud.wait_final(inst["id"], 1)
        threads = [threading.Thread(target=_load, args=(gw.url, gw.token, stop, samples)) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(BEFORE_S)  # the load's steady state before the switch
        cloud.api("PUT", f"{path}/assignments/hello", 200, json={"version": 2, "max_instances": 2, "max_concurrency": 2})
        t_deploy = time.perf_counter()
        cloud.api("POST", f"{path}/deployments", 201)
        done = cloud.wait_final(inst["id"], 2)
        t_done = time.perf_counter()
        time.sleep(AFTER_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        if gw is not None:
            gw.stop()
        cloud.stop()
        shutil.rmtree(work, ignore_errors=True)
    if done["status"] != "succeeded":
        raise RuntimeError(f"the hot deploy ended {done['status']}: {done['message']}")
    before = [lat * 1000 for t, lat, code in samples if t < t_deploy and code == 200]
    window = [(lat * 1000, code) for t, lat, code in samples if t_deploy <= t <= t_done + AFTER_S]
    failed = sum(1 for _, code in window if code != 200)
    p99_before = percentile(before, 99)
    p99_during = percentile([lat for lat, _ in window], 99)
    return {
        "cloud_hot_deploy_failed_invocations": figure(failed, "count", n=len(window), target=at_most(0),
                                                      deploy_to_succeeded_s=round(t_done - t_deploy, 3)),  # fmt: skip
        "cloud_hot_deploy_p99_ms": figure(round(p99_during, 2), "ms", n=len(window), baseline=round(p99_before, 2),
                                          baseline_what="p99 of the same load before the deploy",
                                          invocations_before=len(before)),  # fmt: skip
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
