"""Two cloud replicas on one PostgreSQL: a deploy made through one reaches a gateway polling the other at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.harness import CloudProcess, wait_for
from tests.cloud.postgres import PostgresCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_a_deploy_through_one_replica_reaches_a_gateway_on_the_other_within_a_second(
    tmp_path: Path, postgres: PostgresCluster, make_gateway: Any
) -> None:
    one = CloudProcess(tmp_path / "one", db=postgres.url).spawn()
    two = CloudProcess(tmp_path / "two", db=postgres.url).spawn()
    try:
        one.ready()
        two.ready()
        # The replicas share the database, not the admin token: each has its own data dir.
        inst = one.api("POST", "/v1/instances", 201, json={"name": "far"})
        assert [i["id"] for i in two.api("GET", "/v1/instances", 200)] == [inst["id"]]
        one.function("hello", {"index.py": "def handler(e, c):\n    return b'from postgres'\n"})
        gw = make_gateway(two.url, inst["id"], inst["token"])
        wait_for(lambda: one.api("GET", f"/v1/instances/{inst['id']}", 200)["online"], what="the gateway online")
        one.api("PUT", f"/v1/instances/{inst['id']}/assignments/hello", 200, json={"version": 1})
        t0 = time.monotonic()
        one.api("POST", f"/v1/instances/{inst['id']}/deployments", 201)
        wait_for(lambda: one.deployment(inst["id"], 1)["status"] != "pending", timeout=5, what="the pickup", every=0.01)
        picked_up = time.monotonic() - t0
        assert picked_up < 1.0, f"the gateway on the other replica picked the deployment up after {picked_up:.2f} s"
        assert one.wait_final(inst["id"], 1)["status"] == "succeeded"
        assert gw.invoke("hello").content == b"from postgres"

        # A live log query asked on replica one is answered by the gateway connected to replica two.
        found = one.api("GET", f"/v1/instances/{inst['id']}/logs", 200, params={"function": "hello", "limit": "5"})
        assert "entries" in found
    finally:
        two.stop()
        one.stop()
