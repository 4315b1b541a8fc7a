"""Timer lateness: how long after its due time a cron firing reaches the function's handler.

``timer_lateness_p50_ms`` / ``timer_lateness_p99_ms``: a continuous function with ``schedule: "@every 1s"`` writes
``now - triggerTime`` for each firing it handles; the figure is over ``FIRINGS`` firings. The baseline is the least
lateness possible here: an asyncio loop in this process sleeping until each whole second and measuring how late it
woke (same clock, same machine, same moment).

Run alone with ``python -m bench.bench_timers``.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.figure import at_most, figure, percentile
from bench.gateway import BenchGateway, function

FIRINGS = 8
TICK = """
import json, os, time
from datetime import datetime

def handler(event, context):
    due = datetime.fromisoformat(json.loads(event)["triggerTime"].replace("Z", "+00:00")).timestamp()
    with open(os.environ["LATENESS_FILE"], "a") as f:
        f.write(f"{(time.time() - due) * 1000:.3f}\\n")
"""


async def _asyncio_lateness(n: int) -> list[float]:
    out = []
    for _ in range(n):
        due = int(time.time()) + 1
        await asyncio.sleep(due - time.time())
        out.append((time.time() - due) * 1000)
    return out


def run(firings: int = FIRINGS) -> dict[str, dict[str, Any]]:
    with BenchGateway() as gw:
        sink = Path(gw.data_dir).parent / "lateness.txt"
        gw.deploy([function("tick", mode="continuous", schedule="@every 1s", env={"LATENESS_FILE": str(sink)})],
                  {"tick": TICK})  # fmt: skip
        baseline = asyncio.run(_asyncio_lateness(firings))
        gw.wait_for(lambda: sink.exists() and len(sink.read_text().split()) >= firings + 1, timeout=firings + 10,
                    what="timer firings")  # fmt: skip
        samples = [float(x) for x in sink.read_text().split()][1:]  # the first may be a catch-up
    base50, base99 = percentile(baseline, 50), percentile(baseline, 99)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    common: dict[str, Any] = {"schedule": "@every 1s", "measured_at": datetime.now().isoformat(timespec="seconds")}
    return {
        "timer_lateness_p50_ms": figure(p50, "ms", n=len(samples), target=at_most(50), baseline=base50,
                                        baseline_what="asyncio sleep-until lateness in the bench process", **common),
        "timer_lateness_p99_ms": figure(p99, "ms", n=len(samples), target=at_most(100), baseline=base99,
                                        baseline_what="asyncio sleep-until lateness in the bench process", **common),
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
