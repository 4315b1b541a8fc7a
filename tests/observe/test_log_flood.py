"""A function flooding its log costs the gateway next to nothing and every dropped line is counted (issue 15's
noisy neighbour: the gateway read and decoded every frame of a flooding worker before its rate limit dropped
it, and another function's p99 went to 3× its quiet p99). The worker keeps the function's budget itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.e2e.gateway_harness import GatewayProcess, fn

LINES = 150_000
FLOOD = f"""
import time

def handler(event, context):
    if event == b"warm":
        return "warm"
    for i in range({LINES}):
        print("flood line", i)
    time.sleep(1.2)  # the budget refills: the next line carries the count of those dropped
    print("done")
    return "ok"
"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` itself (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_log_flood_is_dropped_in_the_worker_and_counted(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", config={"logs": {"rate_limit_lines_per_s": 200}}).start()
    try:
        gw.deploy({"functions": [fn("flood", timeout_s=50)]}, {"flood": FLOOD})
        assert gw.client is not None
        assert gw.invoke("flood", b"warm").status_code == 200  # a warm instance: its start is not measured below
        before_dropped = gw.status("flood")["log_lines_dropped"]
        cpu = _cpu_s(gw.pid)
        started = time.monotonic()
        response = gw.invoke("flood")
        assert response.status_code == 200, response.text
        spent = _cpu_s(gw.pid) - cpu
        # 150 000 lines framed and decoded cost the gateway seconds of CPU; a few hundred cost next to nothing.
        assert spent < 0.3 * (time.monotonic() - started) and spent < 1.0, f"gateway used {spent:.2f} s of CPU"

        def counted() -> tuple[int, int] | None:
            assert gw.client is not None
            body = gw.client.get("/v1/functions/flood/logs", params={"limit": "10000", "q": "flood line"}).json()
            done = gw.client.get("/v1/functions/flood/logs", params={"limit": "10", "q": "done"}).json()
            stored = len(body["entries"]) + len(done["entries"])
            dropped = gw.status("flood")["log_lines_dropped"] - before_dropped
            return (stored, dropped) if stored + dropped >= LINES + 1 and done["entries"] else None

        stored, dropped = gw.wait_for(counted, timeout=20, what="every line stored or counted as dropped")
        assert stored + dropped == LINES + 1, (stored, dropped)
        assert dropped > LINES - 2000, dropped
    finally:
        gw.stop()
