"""Per-instance memory cgroups on cgroup v1 and v2, made under one folder per gateway so a restart finds them."""

from __future__ import annotations

import enum
import os
import signal
import time
from pathlib import Path

from edgefc.errors import SandboxError

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupVersion(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    NONE = "none"


def detect(root: Path = CGROUP_ROOT) -> CgroupVersion:
    """Which cgroup layout can hold our memory limits: v2 (unified), v1 (a memory hierarchy), or none."""
    if (root / "cgroup.controllers").exists():
        return CgroupVersion.V2
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return CgroupVersion.V1
    return CgroupVersion.NONE


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


CPU_PERIOD_US = 100_000


class CgroupTree:
    """The folder ``edgefc/<gateway_id>`` that holds every instance cgroup of one gateway.

    On v1 an instance with a CPU quota also gets a folder of the same name under the ``cpu`` hierarchy
    (``cpu_base``); on v2 the quota is a file of its one cgroup.
    """

    def __init__(self, gateway_id: str, root: Path = CGROUP_ROOT) -> None:
        self.version = detect(root)
        self.cpu_base: Path | None = None
        if self.version is CgroupVersion.V1:
            self.base = root / "memory" / "edgefc" / gateway_id
            if (root / "cpu" / "cpu.cfs_quota_us").exists():
                self.cpu_base = root / "cpu" / "edgefc" / gateway_id
        elif self.version is CgroupVersion.V2:
            self.base = root / "edgefc" / gateway_id
        else:
            self.base = Path()

    @staticmethod
    def usable(root: Path = CGROUP_ROOT) -> tuple[bool, str]:
        """Whether we can create memory cgroups here, with the reason when not."""
        version = detect(root)
        if version is CgroupVersion.NONE:
            return False, "no cgroup memory controller mounted"
        probe = (root / "memory" if version is CgroupVersion.V1 else root) / "edgefc"
        try:
            probe.mkdir(exist_ok=True)
        except OSError as exc:
            return False, f"cannot create {probe}: {exc.strerror}"
        return True, f"cgroup {version.value}"

    def open(self) -> None:
        """Create the gateway's folder; on v2 enable the memory controller down to it. Raises SandboxError."""
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            if self.version is CgroupVersion.V2:
                for parent in (self.base.parent.parent, self.base.parent, self.base):
                    control = parent / "cgroup.subtree_control"
                    for controller in ("memory", "cpu"):
                        if controller not in _read(control).split():
                            try:
                                _write(control, f"+{controller}")
                            except OSError:
                                if controller == "memory":
                                    raise  # no CPU quota is a lesser loss: quotas then go unenforced
            if self.cpu_base is not None:
                self.cpu_base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"cannot prepare cgroup folder {self.base}: {exc}") from exc

    def reconcile(self) -> list[str]:
        """Kill what is left in cgroups of an earlier run of this gateway and remove them; returns their names."""
        removed: list[str] = []
        if self.base.is_dir():
            for child in sorted(self.base.iterdir()):
                if child.is_dir():
                    MemoryCgroup(child, self.version).destroy()
                    removed.append(child.name)
        if self.cpu_base is not None and self.cpu_base.is_dir():
            for child in sorted(self.cpu_base.iterdir()):
                if child.is_dir():
                    MemoryCgroup(child, self.version).destroy()
        return removed

    def close(self) -> None:
        """Remove the gateway's folder (and any instance cgroup still in it)."""
        self.reconcile()
        for base in (self.base, self.cpu_base):
            try:
                if base is not None:
                    base.rmdir()
            except OSError:
                pass

    def create(self, name: str, limit_bytes: int, cpu: float | None = None) -> MemoryCgroup:
        """Make the cgroup of one instance with its memory limit (no swap beyond it) and, when ``cpu`` (cores)
        is given and the cpu controller is there, its CPU quota. Raises SandboxError."""
        path = self.base / name
        cg = MemoryCgroup(path, self.version)
        try:
            path.mkdir(exist_ok=True)
            cg.set_limit(limit_bytes)
            if cpu:
                cg.set_cpu(cpu, self.cpu_base / name if self.cpu_base is not None else None)
        except OSError as exc:
            cg.destroy(timeout=0.5)  # never leave an empty cgroup behind a failed start
            raise SandboxError(f"cannot create memory cgroup {path}: {exc}") from exc
        return cg


class MemoryCgroup:
    """One instance's memory cgroup."""

    def __init__(self, path: Path, version: CgroupVersion) -> None:
        self.path = path
        self.version = version
        self.cpu_path: Path | None = None  # v1: the instance's folder in the cpu hierarchy, when it has a quota

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    @property
    def extra_procs_files(self) -> list[Path]:
        """Further ``cgroup.procs`` a new process must join (v1's cpu hierarchy)."""
        return [self.cpu_path / "cgroup.procs"] if self.cpu_path is not None else []

    def set_cpu(self, cores: float, v1_path: Path | None) -> None:
        """A CFS quota of ``cores`` per period; on v1 in ``v1_path`` (skipped when there is no cpu hierarchy)."""
        quota = max(1000, int(cores * CPU_PERIOD_US))
        if self.version is CgroupVersion.V2:
            if (self.path / "cpu.max").exists():
                _write(self.path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        if v1_path is None:
            return
        v1_path.mkdir(exist_ok=True)
        self.cpu_path = v1_path
        _write(v1_path / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(v1_path / "cpu.cfs_quota_us", str(quota))

    def set_limit(self, limit_bytes: int) -> None:
        if self.version is CgroupVersion.V1:
            _write(self.path / "memory.limit_in_bytes", str(limit_bytes))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                _write(memsw, str(limit_bytes))
            _write(self.path / "memory.swappiness", "0")
        else:
            _write(self.path / "memory.max", str(limit_bytes))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                _write(swap, "0")

    def add(self, pid: int) -> None:
        _write(self.procs_file, str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in _read(self.procs_file).split()]
        except OSError:
            return []

    def memory_bytes(self) -> int | None:
        name = "memory.usage_in_bytes" if self.version is CgroupVersion.V1 else "memory.current"
        try:
            return int(_read(self.path / name))
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        name = "memory.oom_control" if self.version is CgroupVersion.V1 else "memory.events"
        try:
            for line in _read(self.path / name).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def hit_limit(self) -> bool:
        """Whether usage ever reached the limit (v1 failcnt / v2 max events): OOM evidence on old kernels."""
        try:
            if self.version is CgroupVersion.V1:
                return int(_read(self.path / "memory.failcnt")) > 0
            for line in _read(self.path / "memory.events").splitlines():
                key, _, value = line.partition(" ")
                if key in ("max", "oom") and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def destroy(self, timeout: float = 2.0) -> None:
        """SIGKILL everything inside and remove the folder (and its cpu folder); rmdir retried until the kernel
        lets go."""
        if self.cpu_path is not None:
            MemoryCgroup(self.cpu_path, self.version).destroy(timeout)
        deadline = time.monotonic() + timeout
        while True:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
