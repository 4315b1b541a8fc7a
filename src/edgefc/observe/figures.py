"""Reading one instance's memory and CPU: from its cgroup where it has one, else from its process tree.

These read files and /proc, so they block briefly: call them from a thread (the stats sampler does).
Memory is the working set the way Docker and the kubelet count it: usage minus inactive file cache, since
the kernel reclaims that cache before it would kill the instance at its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class InstanceFigures:
    """What the supervisor reports about one running instance at one moment."""

    instance_id: str
    pid: int | None
    memory_bytes: int
    memory_limit_bytes: int  # 0 when the instance has no limit
    cpu_seconds: float  # cumulative user + system time since the instance started


def process_tree_figures(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of ``pid`` and all its descendants; (0, 0.0) when the process is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0, 0.0
    rss = 0
    cpu = 0.0
    for i, proc in enumerate(processes):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu += times.user + times.system
        if i == 0:
            # Children the root already reaped no longer appear in the tree; their time is folded in here.
            cpu += times.children_user + times.children_system
    return rss, cpu


def cgroup_figures(path: Path, *, cpu_path: Path | None = None) -> tuple[int, float | None]:
    """(memory bytes, CPU seconds) of a cgroup; CPU is None where the cgroup has no CPU accounting.

    ``path`` is the v2 cgroup, or on v1 the memory-controller cgroup; v1 CPU comes from ``cpu_path`` (the
    cpuacct cgroup), by default the same relative path under the ``cpuacct`` hierarchy. Raises OSError when
    the cgroup does not exist.
    """
    path = Path(path)
    if (path / "memory.current").exists():
        usage = int(_read(path / "memory.current"))
        inactive = _stat(path / "memory.stat").get("inactive_file", 0)
        cpu_usec = _stat(path / "cpu.stat").get("usage_usec") if (path / "cpu.stat").exists() else None
        return max(0, usage - inactive), (None if cpu_usec is None else cpu_usec / 1e6)
    usage = int(_read(path / "memory.usage_in_bytes"))
    inactive = _stat(path / "memory.stat").get("total_inactive_file", 0)
    return max(0, usage - inactive), _cpuacct_seconds(cpu_path or _v1_sibling(path, "cpuacct"))


def _v1_sibling(path: Path, controller: str) -> Path | None:
    parts = path.parts
    if "memory" not in parts:
        return None
    i = parts.index("memory")
    return Path(*parts[:i], controller, *parts[i + 1 :])


def _cpuacct_seconds(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return int(_read(path / "cpuacct.usage")) / 1e9
    except (OSError, ValueError):
        return None


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.isdigit():
            out[key] = int(value)
    return out
