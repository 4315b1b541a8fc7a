"""The data dir does not grow without bound: finished async invocations and unused code bundles (rolled-back
ones too) are pruned on a schedule (issue 15: ``state.db`` 22 → 441 MB in a few async calls)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.gateway_harness import GatewayProcess, fn

SLOW = """
import time
def handler(event, context):
    time.sleep(float(event or b"0"))
    return b"r" * 200_000
"""


def _bundles(gw: GatewayProcess) -> set[str]:
    return {p.name for p in (gw.data_dir / "code").iterdir() if not p.name.startswith(".")}


def test_finished_invocations_and_unused_bundles_are_pruned(tmp_path: Path) -> None:
    config = {"housekeeping": {"interval_s": 1, "invocations_max_age_s": 2, "invocations_max_bytes": 10**9,
                               "keep_deployments": 2}}  # fmt: skip
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        assert gw.client is not None
        for i in range(3):  # three versions of the code: the oldest is neither current nor previous
            gw.deploy(
                {"version": f"v{i}", "functions": [fn("slow", timeout_s=30)]}, {"slow": SLOW + f"# v{i}\n"}
            )
        bad = gw.deploy({"version": "bad", "functions": [fn("slow", timeout_s=30)]},
                        {"slow": "raise RuntimeError('no')\ndef handler(e, c):\n    pass\n"}, expect=422)  # fmt: skip
        assert "rolled back" in bad.text
        running = gw.status("slow")["code_sha256"]

        def submit(seconds: str) -> str:
            r = gw.invoke("slow", seconds.encode(), headers={"X-Edgefc-Invocation-Type": "async"})
            assert r.status_code == 202, r.text
            return str(r.json()["invocation_id"])

        done = [submit("0") for _ in range(3)]
        long = submit("20")

        def state(inv: str) -> httpx.Response:
            return gw.client.get(f"/v1/invocations/{inv}")  # type: ignore[union-attr]

        gw.wait_for(
            lambda: all(state(i).json().get("state") == "succeeded" for i in done),
            what="finished",
            timeout=30,
        )
        # Finished ones go once past their age; the running one stays whatever its age.
        gw.wait_for(
            lambda: all(state(i).status_code == 404 for i in done), what="pruned invocations", timeout=20
        )
        assert state(long).status_code == 200 and state(long).json()["state"] in ("pending", "running")
        # Two deployments' bundles are kept (current and previous); the oldest and the rolled-back one go.
        gw.wait_for(lambda: len(_bundles(gw)) == 2, what="collected bundles", timeout=20)
        assert running in _bundles(gw)
        rollback = gw.client.post("/v1/deployment/rollback")
        assert rollback.status_code == 200, rollback.text
        assert gw.invoke("slow", b"0").status_code == 200
    finally:
        gw.stop()
