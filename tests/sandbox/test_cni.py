"""CNI networking on its own: ADD/DEL through the real plugins, and the sweep when our records are lost."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefc.sandbox import cni
from edgefc.sandbox.bundle import PortMapping
from edgefc.sandbox.reconcile import reconcile
from tests.conftest import need, need_root

pytestmark = pytest.mark.timeout(60)


def rules_naming(prefix: str) -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if prefix in line]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[cni.CniNetwork]:
    need_root()
    plugins = cni.plugin_dir()
    need(plugins is not None, "the CNI plugins (containernetworking-plugins)")
    assert plugins is not None
    tag = secrets.token_hex(3)
    n = int(tag, 16)
    network = cni.CniNetwork(tmp_path / "cni", name=f"efc-c{tag}", bridge=f"efcc{tag}",
                             subnet=f"10.{200 + n % 50}.{n % 250}.0/24", plugins=plugins)  # fmt: skip
    try:
        yield network
    finally:
        await asyncio.to_thread(subprocess.run, ["ip", "link", "delete", network.bridge], capture_output=True)


async def test_add_and_delete(net: cni.CniNetwork) -> None:
    cid = f"efc-c{secrets.token_hex(3)}-one"
    ns = await cni.create_netns(cid)
    try:
        att = await net.add(cid, ns, [PortMapping(40123, 80)])
        assert att.ip is not None and ipaddress.ip_address(att.ip) in ipaddress.ip_network(net.subnet)
        rules = await asyncio.to_thread(rules_naming, cid)
        assert any("MASQUERADE" in r for r in rules), rules
        assert any("dnat" in r for r in rules), rules
        assert net.leftover_ids(cid) == {cid}
        await net.delete(cid)
        assert await asyncio.to_thread(rules_naming, cid) == []
        assert net.leftover_ids(cid) == set()
    finally:
        await cni.delete_netns(cid)
    assert cni.list_netns(cid) == []


async def test_lost_records_are_still_swept(net: cni.CniNetwork, tmp_path: Path) -> None:
    prefix = f"efc-c{secrets.token_hex(3)}-"
    for i in range(2):
        cid = f"{prefix}{i}"
        await net.add(cid, await cni.create_netns(cid), [PortMapping(40200 + i, 80)])
        # As if the gateway died before it could keep its notes: only the lease and the rules remain.
        (net.records / f"{cid}.json").unlink()
    assert len(await asyncio.to_thread(rules_naming, prefix)) >= 4
    assert net.leftover_ids(prefix) == {f"{prefix}0", f"{prefix}1"}
    gone = await reconcile("runc", tmp_path / "no-runc-root", prefix, net)
    assert "network " + f"{prefix}0" in gone
    assert await asyncio.to_thread(rules_naming, prefix) == []
    assert net.leftover_ids(prefix) == set() and cni.list_netns(prefix) == []
    brif = Path("/sys/class/net", net.bridge, "brif")
    assert await asyncio.to_thread(lambda: list(brif.iterdir())) == []  # veths went with their namespaces
