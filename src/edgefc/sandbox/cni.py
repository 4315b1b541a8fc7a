"""Container networking through the standard CNI plugins: a netns per instance, bridge + host-local + portmap.

The plugins of Debian's ``containernetworking-plugins`` are executed directly, as a CNI runtime would: the
plugin's config on stdin, ``CNI_*`` in the environment, ``ADD`` in list order with each result passed on as
``prevResult``, ``DEL`` in reverse order. Every attachment is recorded in ``<state>/attachments/<id>.json``
before ``ADD`` runs, so a later run (after a SIGKILL) can ``DEL`` exactly what was added, and then any rule,
lease or namespace still named after our prefix is swept away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefc.errors import SandboxError
from edgefc.sandbox.bundle import PortMapping

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
NETNS_DIR = Path("/run/netns")
IFNAME = "eth0"
# host-local's leases for every gateway of this host: one pool per bridge, gone at reboot with the netns.
HOST_IPAM_DIR = Path("/run/edgefc/cni/ipam")


def plugin_dir() -> Path | None:
    """Where the CNI plugins are installed, or None."""
    for path in (os.environ.get("EDGEFC_CNI_PATH"), "/usr/lib/cni", "/opt/cni/bin"):
        if path and os.access(os.path.join(path, "bridge"), os.X_OK):
            return Path(path)
    return None


async def run(
    *argv: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run a helper command; returns (code, stdout, stderr). Raises SandboxError when it cannot be executed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise SandboxError(f"cannot run {argv[0]}: {exc}") from exc
    out, err = await asyncio.shield(proc.communicate(stdin))
    assert proc.returncode is not None
    return proc.returncode, out, err


async def create_netns(name: str) -> str:
    """Create the named network namespace with loopback up; returns its path. Raises SandboxError."""
    code, _, err = await run("ip", "netns", "add", name)
    if code != 0:
        raise SandboxError(f"ip netns add {name}: {err.decode(errors='replace').strip()}")
    code, _, err = await run("ip", "-n", name, "link", "set", "lo", "up")
    if code != 0:
        await delete_netns(name)
        raise SandboxError(f"loopback up in {name}: {err.decode(errors='replace').strip()}")
    return str(NETNS_DIR / name)


async def delete_netns(name: str) -> None:
    """Delete the named network namespace if it exists (its veth ends go with it)."""
    if (NETNS_DIR / name).exists():
        await run("ip", "netns", "delete", name)


def list_netns(prefix: str) -> list[str]:
    """Names of the network namespaces that start with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class Attachment:
    """One container's place on the bridge."""

    container_id: str
    netns: str
    ip: str | None


class CniNetwork:
    """The bridge network of one gateway: ADD/DEL of instances, and the sweep of what a dead run left."""

    def __init__(self, state_dir: Path, *, name: str, bridge: str, subnet: str, plugins: Path,
                 ipam_dir: Path | None = None) -> None:  # fmt: skip
        self.state_dir = state_dir
        self.name = name
        self.bridge = bridge
        self.subnet = subnet
        self.plugins = plugins
        self.records = state_dir / "attachments"
        # host-local keeps its leases in <ipam_dir>/<name>: networks that share a bridge must share both,
        # or each hands out the same addresses on it.
        self.ipam_dir = ipam_dir or state_dir / "ipam"

    def _plugins(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.ipam_dir),
                },
            },
            # snat: a client on the host reaches the mapping at 127.0.0.1:<host port> (portmap sets
            # route_localnet on the bridge for that).
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ]

    def _env(self, command: str, container_id: str, netns: str) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": str(self.plugins),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }

    async def _invoke(
        self, command: str, plugin: dict[str, Any], container_id: str, netns: str,
        ports: list[dict[str, Any]], prev: dict[str, Any] | None,
    ) -> dict[str, Any]:  # fmt: skip
        conf = {"cniVersion": CNI_VERSION, "name": self.name, **plugin}
        if plugin.get("capabilities", {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": ports}
        if prev is not None:
            conf["prevResult"] = prev
        exe = str(self.plugins / plugin["type"])
        code, out, err = await run(
            exe, stdin=json.dumps(conf).encode(), env=self._env(command, container_id, netns)
        )
        if code != 0:
            detail = (out or err).decode(errors="replace").strip()
            raise SandboxError(f"CNI {plugin['type']} {command} for {container_id}: {detail}")
        return json.loads(out) if out.strip() else {}

    async def add(self, container_id: str, netns: str, ports: list[PortMapping]) -> Attachment:
        """Attach ``netns`` to the bridge with ``ports`` mapped; on failure undoes it. Raises SandboxError."""
        mappings = [{"hostPort": p.host, "containerPort": p.container, "protocol": p.proto} for p in ports]
        self.records.mkdir(parents=True, exist_ok=True)
        record = self.records / f"{container_id}.json"
        # Written first: a SIGKILL between here and the end of ADD still leaves enough to DEL.
        record.write_text(json.dumps({"netns": netns, "ports": mappings}))
        result: dict[str, Any] | None = None
        try:
            for plugin in self._plugins():
                if plugin["type"] == "portmap" and not mappings:
                    continue
                result = await self._invoke("ADD", plugin, container_id, netns, mappings, result) or result
        except BaseException:
            await asyncio.shield(self.delete(container_id))
            raise
        ips = (result or {}).get("ips") or [{}]
        address = ips[0].get("address")
        return Attachment(container_id, netns, address.split("/")[0] if address else None)

    async def delete(self, container_id: str) -> None:
        """Detach ``container_id`` (rules, lease, veth), tolerating a half-made or already gone attachment."""
        record = self.records / f"{container_id}.json"
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            data = {"netns": "", "ports": []}
        for plugin in reversed(self._plugins()):
            try:
                await self._invoke(
                    "DEL", plugin, container_id, data.get("netns", ""), data.get("ports", []), None
                )
            except SandboxError as exc:
                log.warning("%s", exc)
        record.unlink(missing_ok=True)

    def leftover_ids(self, prefix: str) -> set[str]:
        """Container ids with a record or an IPAM lease that start with ``prefix``."""
        ids = {p.stem for p in self.records.glob(f"{prefix}*.json")} if self.records.is_dir() else set()
        leases = self.ipam_dir / self.name
        if leases.is_dir():
            for lease in leases.iterdir():
                try:
                    owner = lease.read_text().split()[0] if lease.name[0].isdigit() else ""
                except (OSError, IndexError):
                    continue
                if owner.startswith(prefix):
                    ids.add(owner)
        return ids

    async def sweep_iptables(self, prefix: str) -> int:
        """Delete every nat/filter rule whose comment names one of our containers, then their emptied chains."""
        removed = 0
        for table in ("nat", "filter"):
            code, out, _ = await run("iptables-save", "-t", table)
            if code != 0:
                continue
            rules = [line for line in out.decode().splitlines() if line.startswith("-A ")]
            ours = [r for r in rules if f'id: \\"{prefix}' in r or f'id: "{prefix}' in r]
            chains = set()
            for rule in ours:
                parts = rule.split()
                if "-j" in parts and parts[parts.index("-j") + 1].startswith("CNI-"):
                    chains.add(parts[parts.index("-j") + 1])
                args = _split_rule(rule)
                code, _, _ = await run("iptables", "-w", "-t", table, "-D", *args[1:])
                removed += code == 0
            for chain in sorted(chains):
                await run("iptables", "-w", "-t", table, "-F", chain)
                await run("iptables", "-w", "-t", table, "-X", chain)
        return removed

    async def remove_bridge_if_unused(self) -> None:
        """Delete our bridge, and its lease pool if it holds no lease, when nothing is attached to it any more."""
        brif = Path("/sys/class/net") / self.bridge / "brif"
        if brif.is_dir() and not any(brif.iterdir()):
            await run("ip", "link", "delete", self.bridge)
            pool = self.ipam_dir / self.name
            # Lease files are named by address; what else is there is host-local's lock and cursor.
            if pool.is_dir() and not any(p.name[0].isdigit() or ":" in p.name for p in pool.iterdir()):
                shutil.rmtree(pool, ignore_errors=True)


def _split_rule(rule: str) -> list[str]:
    """Split an ``iptables-save`` line into arguments, honouring its double-quoted comments."""
    return shlex.split(rule)
