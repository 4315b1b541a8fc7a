"""The container sandbox: one runc container per instance, with its own netns on the CNI bridge.

Each instance is ``runc run --keep`` kept as our child: runc stays the container's parent and reaper and exits
with its status, and ``--keep`` leaves the stopped container's cgroup in place until we have read its
``oom_kill`` counter; only then is it deleted. Signals go to the container's init through a pidfd, so a
recycled pid can never be hit. Cleanup runs in a task of its own, which callers await shielded: cancelling a
caller never leaves a container, cgroup, netns, lease or iptables rule behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import signal
from pathlib import Path

from edgefc.errors import SandboxError
from edgefc.sandbox import cni
from edgefc.sandbox.base import ExitStatus, Instance, InstanceSpec, Sandbox
from edgefc.sandbox.bundle import PortMapping, write_bundle
from edgefc.sandbox.cgroups import CgroupTree, CgroupVersion, detect
from edgefc.sandbox.reconcile import CGROUP_PARENT, reconcile, remove_cgroups, runc_command

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
OUTPUT_TAIL = 64 * 1024
START_TIMEOUT = 10.0


def find_runc() -> str | None:
    """The runc binary, or None."""
    return shutil.which("runc") or next(
        (p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.path.exists(p)), None
    )


class InstanceState(enum.Enum):
    """Lifecycle of one container instance."""

    RUNNING = "running"
    EXITED = "exited"  # runc returned; cleanup may still be running
    CLEANED = "cleaned"  # container, cgroup and network are gone


class RuncInstance(Instance):
    """One worker in its own runc container."""

    def __init__(self, sandbox: RuncSandbox, spec: InstanceSpec, container_id: str, proc: asyncio.subprocess.Process,
                 pid: int, networked: bool) -> None:  # fmt: skip
        self.spec = spec
        self.container_id = container_id
        self.state = InstanceState.RUNNING
        self.output = b""  # the tail of what the container wrote to stdout/stderr, once it ended
        self._sandbox = sandbox
        self._proc = proc
        self._pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # a quick container may be done before we look: nothing left to signal
            self._pidfd = -1
        self._networked = networked
        self._returncode: int | None = None
        self._reaper = asyncio.create_task(self._reap(), name=f"reap {container_id}")

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _signal(self, signum: int) -> None:
        if self.state is not InstanceState.RUNNING or self._pidfd < 0:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        """SIGKILL the container's init; the kernel then kills everything in its pid namespace."""
        self._signal(signal.SIGKILL)

    async def wait(self) -> ExitStatus:
        """Wait for the exit and the full cleanup; cancelling the caller does not cancel the cleanup."""
        return await asyncio.shield(self._reaper)

    async def stop(self, grace: float = 2.0) -> ExitStatus:
        """SIGTERM, ``grace`` seconds, SIGKILL; returns after cleanup. A cancelled stop still kills."""
        try:
            self._signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(asyncio.shield(self._reaper), grace)
            except TimeoutError:
                self.kill()
                return await asyncio.shield(self._reaper)
        except asyncio.CancelledError:
            self.kill()
            raise

    def _cgroup_file(self, controller: str, v1_name: str, v2_name: str) -> Path:
        if self._sandbox.cgroup_version is CgroupVersion.V2:
            return CGROUP_ROOT / CGROUP_PARENT / self.container_id / v2_name
        return CGROUP_ROOT / controller / CGROUP_PARENT / self.container_id / v1_name

    def memory_bytes(self) -> int | None:
        try:
            return int(self._cgroup_file("memory", "memory.usage_in_bytes", "memory.current").read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        try:
            if self._sandbox.cgroup_version is CgroupVersion.V2:
                for line in self._cgroup_file("cpu", "", "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return None
            return int(self._cgroup_file("cpuacct", "cpuacct.usage", "").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def _oom_kills(self) -> int:
        path = self._cgroup_file("memory", "memory.oom_control", "memory.events")
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    async def _reap(self) -> ExitStatus:
        oom = False
        try:
            code = await self._proc.wait()
        finally:
            self.state = InstanceState.EXITED
            if self._pidfd >= 0:
                os.close(self._pidfd)
            self._pidfd = -1
            # runc --keep left the cgroup: the OOM counter is still readable, and must be read before delete.
            oom = self._oom_kills() > 0
            await asyncio.shield(self._cleanup())
        # runc reports a death by signal N as 128 + N, the shell's convention.
        self._returncode = -(code - 128) if 128 < code < 160 else code
        return ExitStatus(self._returncode, oom=oom)

    async def _cleanup(self) -> None:
        try:
            self.output = await asyncio.to_thread(self._sandbox.release_output, self.container_id)
            await self._sandbox.teardown(self.container_id, self._networked)
        finally:
            self.state = InstanceState.CLEANED
            self._sandbox.instances.pop(self.container_id, None)


class RuncSandbox(Sandbox):
    """Runs every instance in its own runc container (``isolation: container``)."""

    name = "container"

    def __init__(self, state_dir: Path, *, gateway_id: str, data_dir: Path, bridge: str = "efc0",
                 subnet: str = "10.89.71.0/24") -> None:  # fmt: skip
        self.state_dir = state_dir
        self.gateway_id = gateway_id
        self.data_dir = data_dir
        self.prefix = f"efc-{gateway_id}-"
        self.runc_root = state_dir / "runc"
        self.bundles = state_dir / "bundles"
        self.logs = state_dir / "logs"
        self.instances: dict[str, RuncInstance] = {}
        self.cgroup_version = detect()
        self.runc = find_runc() or "runc"
        plugins = cni.plugin_dir()
        self.net = (
            # One network (name and lease pool) per bridge, shared by every gateway on this host: each
            # gateway's leases, rules and namespaces are still told apart by the ids' efc-<gateway>- prefix.
            cni.CniNetwork(
                state_dir / "cni",
                name=f"edgefc-{bridge}",
                bridge=bridge,
                subnet=subnet,
                plugins=plugins,
                ipam_dir=cni.HOST_IPAM_DIR,
            )
            if plugins is not None
            else None
        )

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether containers can run here (runc, root, cgroups, CNI plugins), with the reason when not."""
        if find_runc() is None:
            return False, "runc is not installed"
        if os.geteuid() != 0:
            return False, "containers need root"
        ok, why = CgroupTree.usable()
        if not ok:
            return False, why
        if cni.plugin_dir() is None:
            return False, "the CNI plugins (containernetworking-plugins) are not installed"
        if shutil.which("ip") is None and not os.path.exists("/usr/sbin/ip"):
            return False, "the ip command (iproute2) is not installed"
        return True, f"runc {find_runc()}, {why}"

    async def open(self) -> None:
        """Create the state folders and remove everything an earlier run of this gateway left. Raises SandboxError."""
        ok, why = self.available()
        if not ok:
            raise SandboxError(f"container sandbox unavailable: {why}")
        for path in (self.runc_root, self.bundles, self.logs):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        gone = await reconcile(self.runc, self.runc_root, self.prefix, self.net)
        for name in os.listdir(self.bundles):
            await asyncio.to_thread(shutil.rmtree, self.bundles / name, True)
        if gone:
            log.warning("removed leftovers of an earlier run: %s", ", ".join(gone))

    async def start(self, spec: InstanceSpec, *, argv: list[str] | None = None) -> RuncInstance:
        """Write the bundle, attach the network and run the container; ``argv`` (tests only) replaces the worker."""
        cid = self.prefix + spec.instance_id
        if cid in self.instances:
            raise SandboxError(f"instance {spec.instance_id} is already running")
        networked = not spec.container.host_network
        bundle = self.bundles / cid
        proc: asyncio.subprocess.Process | None = None
        attach: asyncio.Task[object] | None = None
        try:
            ports = [PortMapping.parse(p) for p in spec.container.ports]
            netns = None
            if networked:
                if self.net is None:
                    raise SandboxError("the CNI plugins are not installed")
                netns = await cni.create_netns(cid)
                # The CNI chain (~40 ms of iptables) runs while runc starts: runc needs only the namespace to
                # exist, and the worker loads user code only after start() returns, so code never sees it half-done.
                attach = asyncio.create_task(self.net.add(cid, netns, ports), name=f"cni-add-{cid}")
            await asyncio.to_thread(write_bundle, bundle, spec, cgroups_path=f"/{CGROUP_PARENT}/{cid}",
                                    netns_path=netns, argv=argv)  # fmt: skip
            out = await asyncio.to_thread(open, self.logs / f"{cid}.log", "wb")  # no file I/O on the loop
            with out:
                proc = await asyncio.create_subprocess_exec(
                    self.runc, "--root", str(self.runc_root), "run", "--keep", "--pid-file", str(bundle / "pid"),
                    "--bundle", str(bundle), cid,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                )  # fmt: skip
            pid = await self._wait_pid(bundle / "pid", proc)
            if attach is not None:
                await attach
            instance = RuncInstance(self, spec, cid, proc, pid, networked)
        except BaseException:
            if attach is not None and not attach.done():
                await asyncio.gather(attach, return_exceptions=True)
            await asyncio.shield(self._abort(cid, proc, networked))
            raise
        self.instances[cid] = instance
        return instance

    async def _wait_pid(self, pid_file: Path, proc: asyncio.subprocess.Process) -> int:
        """The container init's host pid, from runc's pid file. Raises SandboxError if runc fails first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        delay = 0.001
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(await asyncio.to_thread(pid_file.read_text))
            if proc.returncode is not None or loop.time() > deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), delay)
            delay = min(delay * 2, 0.02)
        text = self.release_output(pid_file.parent.name, keep=True).decode(errors="replace").strip()
        raise SandboxError(f"runc could not start {pid_file.parent.name}: {text or 'timed out'}")

    async def _abort(self, cid: str, proc: asyncio.subprocess.Process | None, networked: bool) -> None:
        if proc is not None and proc.returncode is None:
            await runc_command(self.runc, self.runc_root, "kill", cid, "KILL")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self.release_output(cid)
        await self.teardown(cid, networked)

    def release_output(self, cid: str, keep: bool = False) -> bytes:
        """The tail of the container's output log; removes the log unless ``keep``."""
        path = self.logs / f"{cid}.log"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - OUTPUT_TAIL))
                data = f.read()
        except OSError:
            return b""
        if not keep:
            path.unlink(missing_ok=True)
        return data

    async def teardown(self, cid: str, networked: bool) -> None:
        """Delete the container, its cgroups, its network and its bundle; safe to repeat."""
        try:
            code, _, err = await runc_command(self.runc, self.runc_root, "delete", "--force", cid)
            if code != 0 and b"does not exist" not in err:
                log.warning("runc delete %s: %s", cid, err.decode(errors="replace").strip())
        finally:
            # Unconditional: runc removes the cgroups it made, but not when its delete failed halfway or could
            # not even start (a full disk, a missing binary).
            await asyncio.to_thread(remove_cgroups, cid, exact=True)
            try:
                if networked and self.net is not None:
                    await self.net.delete(cid)
                    await cni.delete_netns(cid)
            finally:
                await asyncio.to_thread(shutil.rmtree, self.bundles / cid, True)

    async def close(self) -> None:
        """Kill every running container and wait until each is cleaned up; then drop our idle bridge."""
        instances = list(self.instances.values())
        for instance in instances:
            instance.kill()
        await asyncio.gather(*(asyncio.shield(i.wait()) for i in instances), return_exceptions=True)
        if self.net is not None:
            await self.net.remove_bridge_if_unused()
