"""Find and remove what an earlier run of a gateway's container sandbox left behind, by name prefix.

A gateway SIGKILLed with containers running leaves: runc containers (and their ``runc run`` parents), their
cgroups in every hierarchy, network namespaces, veths, IPAM leases and iptables rules. Every one of those
names starts with ``efc-<gateway_id>-``, so this finds exactly ours and nobody else's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from edgefc.errors import SandboxError
from edgefc.sandbox import cni

CGROUP_PARENT = "edgefc"  # containers live at <hierarchy>/edgefc/<container id>, beside the process sandbox's


def cgroup_mounts() -> list[Path]:
    """The mount point of every cgroup hierarchy (v1 controllers, named ones and the v2 unified one)."""
    mounts = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
                mounts.append(Path(fields[1]))
    return mounts


def _kill_and_remove(path: Path, deadline: float) -> None:
    """SIGKILL every process of one cgroup, then remove it (and sub-cgroups), retrying until ``deadline``."""
    for child in [p for p in path.iterdir() if p.is_dir()]:
        _kill_and_remove(child, deadline)
    while True:
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def remove_cgroups(prefix: str, *, exact: bool = False, timeout: float = 5.0) -> list[str]:
    """Kill and remove every cgroup named ``<prefix>*`` (or exactly ``prefix``) under our parent (blocking)."""
    removed = []
    deadline = time.monotonic() + timeout
    for mount in cgroup_mounts():
        parent = mount / CGROUP_PARENT
        if not parent.is_dir():
            continue
        for path in [parent / prefix] if exact else sorted(parent.glob(f"{prefix}*")):
            if path.is_dir():
                _kill_and_remove(path, deadline)
                removed.append(str(path))
    return removed


async def runc_command(runc: str, root: Path, *args: str) -> tuple[int, bytes, bytes]:
    """Run ``runc --root <root> <args>``; returns (code, stdout, stderr)."""
    return await cni.run(runc, "--root", str(root), *args)


async def remove_containers(runc: str, root: Path, prefix: str) -> list[str]:
    """Force-delete every runc container under ``root`` whose id starts with ``prefix``."""
    if not await asyncio.to_thread(root.is_dir):
        return []
    code, out, err = await runc_command(runc, root, "list", "--format", "json")
    if code != 0:
        raise SandboxError(f"runc list: {err.decode(errors='replace').strip()}")
    ids = [c["id"] for c in json.loads(out or b"null") or [] if c["id"].startswith(prefix)]
    for cid in ids:
        await runc_command(runc, root, "delete", "--force", cid)
    return ids


async def reconcile(runc: str, root: Path, prefix: str, net: cni.CniNetwork | None) -> list[str]:
    """Remove every container, cgroup, netns, lease and iptables rule named ``prefix*``; returns what went."""
    gone = [f"container {cid}" for cid in await remove_containers(runc, root, prefix)]
    gone += [f"cgroup {p}" for p in await asyncio.to_thread(remove_cgroups, prefix)]
    ids = set(cni.list_netns(prefix))
    if net is not None:
        ids |= net.leftover_ids(prefix)
        for cid in sorted(ids):
            await net.delete(cid)
    for name in cni.list_netns(prefix):
        await cni.delete_netns(name)
    gone += [f"network {cid}" for cid in sorted(ids)]
    if net is not None:
        rules = await net.sweep_iptables(prefix)
        if rules:
            gone.append(f"{rules} iptables rules")
    return gone
