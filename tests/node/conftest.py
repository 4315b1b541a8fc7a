"""Node.js functions on a real gateway: ``node`` must be installed (and the worker's npm dependencies)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from edgefc.node import DEPENDENCIES, MIN_MAJOR, find_node, node_version
from tests.conftest import need
from tests.e2e.gateway_harness import GatewayProcess


def need_node() -> str:
    """The node binary, or skip (fail under EDGEFC_REQUIRE_ALL=1) when node or the worker's npm packages are missing."""
    node = find_node()
    need(node is not None, "the node binary (Debian package nodejs)")
    assert node is not None
    version = node_version(node)
    need(version is not None and version[0] >= MIN_MAJOR, f"Node.js >= {MIN_MAJOR}")
    need((DEPENDENCIES / "@msgpack" / "msgpack").is_dir(), "the Node.js worker's npm packages (make install)")
    return node


@pytest.fixture(scope="module")
def node_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway (process sandbox) shared by a module's tests: each deploys the functions it needs."""
    need_node()
    gw = GatewayProcess(tmp_path_factory.mktemp("node") / "data").start()
    yield gw
    gw.stop()


def entry(name: str, **settings: object) -> dict[str, object]:
    """A manifest entry for a Node.js function with its code in ./name (index.js, handler index.handler)."""
    return {"name": name, "code": f"./{name}", "handler": "index.handler", "runtime": "nodejs20", **settings}


def js(source: str) -> dict[str, str]:
    return {"index.js": source}


def logs_of(gw: GatewayProcess, name: str, **params: str) -> list[dict[str, object]]:
    assert gw.client is not None
    response = gw.client.get(f"/v1/functions/{name}/logs", params={"order": "asc", "limit": "500", **params})
    assert response.status_code == 200, response.text
    return response.json()["entries"]  # type: ignore[no-any-return]




def deploy_once(gw: GatewayProcess, manifest: dict[str, Any], sources: dict[str, Any]) -> None:
    """Deploy ``manifest`` (which names a ``version``) unless that version is already the applied one.

    A module's tests share one gateway and mostly one deployment: deploying it again for each test would only
    re-run the deploy checks (a ``node --check`` per function) on a busy machine.
    """
    assert gw.client is not None and manifest.get("version")
    if gw.client.get("/v1/deployment").json().get("version") != manifest["version"]:
        gw.deploy(manifest, sources)
