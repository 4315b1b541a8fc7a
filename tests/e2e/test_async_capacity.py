"""Async invocations under load through a real gateway: every one answered 202 runs, none fails ``Busy``."""

from __future__ import annotations

from typing import Any

from tests.e2e.gateway_harness import GatewayProcess, fn

SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(0.02)\n    return event\n"


def invocation(gw: GatewayProcess, inv_id: str) -> dict[str, Any]:
    assert gw.client is not None
    return gw.client.get(f"/v1/invocations/{inv_id}").json()  # type: ignore[no-any-return]


def test_every_accepted_async_invocation_runs(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("slow", max_instances=1, max_concurrency=1, max_queue=2)]}, {"slow": SLOW})
    ids = []
    for i in range(40):
        answer = gateway.invoke("slow", str(i).encode(), headers={"X-Edgefc-Invocation-Type": "async"})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["invocation_id"])

    def finished() -> list[dict[str, Any]] | None:
        found = [invocation(gateway, i) for i in ids]
        return found if all(f["state"] in ("succeeded", "failed") for f in found) else None

    done = gateway.wait_for(finished, timeout=40, what="every async invocation to finish")
    failed = [f["error"] for f in done if f["state"] == "failed"]
    assert failed == []
    assert gateway.status("slow")["invocations"] == 40
