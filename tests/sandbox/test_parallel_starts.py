"""A deployment of many functions starts their probes a few at a time (issue 15: 2 000 functions started 888
worker processes at once). ``limits.parallel_starts`` bounds the workers a deploy has alive at any moment."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.e2e.gateway_harness import GatewayProcess, fn

# The import takes a moment, so that probes started together are alive together.
SLOW_IMPORT = "import time\ntime.sleep(0.1)\n\ndef handler(event, context):\n    return 'hi'\n"
FUNCTIONS = 200
PARALLEL = 4


def _live_descendants(root: int) -> int:
    """Processes under ``root`` (not counting it) that are not zombies."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    count = 0
    for pid in parents:
        seen, up = 0, parents.get(pid)
        while up is not None and up > 1 and seen < 64:
            if up == root:
                count += 1
                break
            up, seen = parents.get(up), seen + 1
    return count


def test_many_functions_start_a_few_at_a_time(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", config={"limits": {"parallel_starts": PARALLEL}}).start()
    try:
        baseline = _live_descendants(gw.pid)  # the fork server and its helpers
        peak = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _live_descendants(gw.pid) - baseline)
                done.wait(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        names = [f"f{i:03d}" for i in range(FUNCTIONS)]
        try:
            response = gw.deploy({"functions": [fn(n) for n in names]}, {n: SLOW_IMPORT for n in names})
        finally:
            done.set()
            watcher.join(5)
        assert sorted(response.json()["started"]) == names
        assert peak >= 2, f"the watcher saw at most {peak} probe workers: it cannot tell a bound from none"
        # A probe's worker may be seen between its stop and its reaping, hence a little slack over the bound.
        assert peak <= PARALLEL + 2, f"{peak} workers alive at once (limits.parallel_starts is {PARALLEL})"
        assert gw.invoke("f199").status_code == 200
    finally:
        gw.stop()
