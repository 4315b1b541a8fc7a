"""Redeploying a continuous container function that maps a host port: events wait for the new version, none is refused.

The host port cannot be bound by two containers at once, so the old version stops before the new one starts; the
gap stays, but invokes arriving in it are held by the new version's manager until its instance is ready.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.e2e.test_containers import free_port, gw, require_containers  # noqa: F401 — the module's gateway

VERSION = """
import os

def handler(event, context):
    return os.environ["V"]
"""


def test_invokes_are_held_while_a_port_mapped_continuous_function_is_replaced(gw: GatewayProcess,  # noqa: F811
                                                                               tmp_path: Path) -> None:  # fmt: skip
    port = free_port()

    def manifest(version: str) -> dict[str, object]:
        return {"functions": [fn("fc-replaced", mode="continuous", env={"V": version}, timeout_s=10,
                                 container={"ports": [f"{port}:80/tcp"]})]}  # fmt: skip

    gw.deploy(manifest("1"), {"fc-replaced": VERSION})
    assert gw.invoke("fc-replaced").text == "1"
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/v1/functions/fc-replaced/invoke", content=b"")
                statuses.append((r.status_code, r.text))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        gw.wait_for(lambda: len(statuses) >= 5, what="invokes before the redeploy")
        gw.deploy(manifest("2"), {"fc-replaced": VERSION})
        gw.wait_for(lambda: statuses[-1] == (200, "2"), what="the new version answering")
    finally:
        stop.set()
        thread.join(30)
    refused = [s for s in statuses if s[0] != 200]
    assert refused == [], refused[:5]
    versions = [text for _, text in statuses]
    assert versions[0] == "1" and versions[-1] == "2"
    assert versions == sorted(versions)  # never back to the old version once the new one answered
