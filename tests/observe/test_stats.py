"""Resource figures of real processes and cgroups, the sampler, and its persisted history."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

try:  # tests/ is a package in some layouts of this tree, a plain folder in others
    from tests.conftest import need, need_root
except ImportError:
    from conftest import need, need_root  # type: ignore[no-redef]
from edgefc.observe.history import History
from edgefc.observe.metrics import Metrics
from edgefc.observe.stats import InstanceFigures, StatsCollector, cgroup_figures, process_tree_figures

MB = 1024 * 1024
ALLOC = 50 * MB
CHILD = f"""
import sys, time
block = bytearray({ALLOC})
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page so it is resident
while time.process_time() < 0.3:
    pass  # burn 0.3 s of CPU time, however loaded the machine is
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def ready_child(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A child that prints "ready" once its memory is in place; killed, reaped and its pipes closed after."""
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield proc
        finally:
            proc.kill()


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[str]]:
    with ready_child([sys.executable, "-c", CHILD]) as proc:
        yield proc


def test_process_tree_figures_near_truth(hog: subprocess.Popen[str]) -> None:
    rss, cpu = process_tree_figures(hog.pid)
    # A bare interpreter is ~10 MB here; the 50 MB block must show, within an interpreter's margin.
    assert ALLOC <= rss <= ALLOC + 30 * MB, rss
    assert 0.25 <= cpu <= 5.0, cpu
    assert process_tree_figures(2**22 + 12345) == (0, 0.0)


def test_process_tree_includes_descendants() -> None:
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}])"
    with ready_child([sys.executable, "-c", code]) as parent:
        rss, _ = process_tree_figures(parent.pid)
        assert rss >= ALLOC + 5 * MB  # the child's block plus the parent interpreter
        assert parent.stdin is not None
        parent.stdin.close()  # the grandchild reads EOF and exits, then the parent
        parent.wait(10)


def test_cgroup_v1_figures() -> None:
    need_root()
    mem_root, cpu_root = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/cpuacct")
    need((mem_root / "memory.usage_in_bytes").exists(), "cgroup v1 memory controller")
    name = f"edgefc-test-{uuid.uuid4().hex[:8]}"
    mem, cpu = mem_root / name, cpu_root / name
    mem.mkdir()
    cpu.mkdir()
    enter = (
        f"echo $$ > {mem}/cgroup.procs && echo $$ > {cpu}/cgroup.procs && exec {sys.executable} -c '{CHILD}'"
    )
    try:
        with ready_child(["sh", "-c", enter]):
            memory, cpu_s = cgroup_figures(mem)
            assert ALLOC <= memory <= ALLOC + 30 * MB, memory
            assert cpu_s is not None and 0.25 <= cpu_s <= 5.0, cpu_s
            assert cgroup_figures(mem, cpu_path=Path("/nonexistent"))[1] is None
    finally:
        for d in (mem, cpu):
            deadline = time.monotonic() + 5
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    with pytest.raises(OSError):
        cgroup_figures(mem)


def test_cgroup_v2_files(tmp_path: Path) -> None:
    # This machine's unified hierarchy has no memory controller; the v2 file formats are checked as files.
    (tmp_path / "memory.current").write_text("73400320\n")
    (tmp_path / "memory.stat").write_text("anon 50000000\ninactive_file 1000000\nactive_file 5\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroup_figures(tmp_path) == (72400320, 2.5)


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[str]]:
    with ready_child([sys.executable, "-c", "print('ready', flush=True)\nwhile True: pass"]) as proc:
        yield proc


async def test_collector_samples_real_processes(
    tmp_path: Path, hog: subprocess.Popen[str], spinner: subprocess.Popen[str]
) -> None:
    metrics = Metrics()

    def sample() -> dict[str, list[InstanceFigures]]:
        out = {}
        for name, pid in (("hog", hog.pid), ("spin", spinner.pid)):
            rss, cpu = process_tree_figures(pid)
            out[name] = [InstanceFigures(f"{name}-1", pid, rss, 128 * MB, cpu)]
        return out

    stats = StatsCollector(sample, tmp_path, interval_s=0.25, metrics=metrics)
    spin_proc = psutil.Process(spinner.pid)
    cpu0, wall0 = sum(spin_proc.cpu_times()[:2]), time.monotonic()
    await stats.start()
    deadline = time.monotonic() + 10
    while stats.samples < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    snap = stats.snapshot()
    # What the kernel says the spinner got meanwhile: on a machine shared with other work, less than a core.
    real = 100 * (sum(spin_proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0)
    await stats.close()
    hog_figures, spin = snap["functions"]["hog"], snap["functions"]["spin"]
    assert ALLOC <= hog_figures["memory_bytes"] <= ALLOC + 30 * MB
    assert hog_figures["memory_limit_bytes"] == 128 * MB and hog_figures["cpu_percent"] < 20
    assert min(50, real * 0.5) <= spin["cpu_percent"] <= 110, (spin, real)  # up to one busy core
    assert spin["instances"][0]["id"] == "spin-1" and stats.instance("spin-1") is not None
    host = snap["host"]
    assert set(host) >= {"cpu_percent", "memory_bytes", "memory_total_bytes", "disk_free_bytes", "load"}
    assert 0 < host["memory_bytes"] < host["memory_total_bytes"] and host["disk_free_bytes"] > 0
    assert len(host["load"]) == 3
    history = snap["history"]
    assert len(history["time"]) >= 4 and len(history["functions"]["hog"]["memory_bytes"]) == len(
        history["time"]
    )
    body = metrics.render()[0].decode()
    assert 'edgefc_function_memory_bytes{function="hog"}' in body
    # The history survives a restart of the collector.
    again = StatsCollector(lambda: {}, tmp_path, interval_s=0.25)
    await again.start()
    try:
        restored = again.snapshot()["history"]
        assert (
            restored["functions"]["hog"]["memory_bytes"][: len(history["time"])]
            == history["functions"]["hog"]["memory_bytes"]
        )
        assert again.snapshot(history_s=0)["history"]["time"] == []
    finally:
        await again.close()


def test_history_is_bounded() -> None:
    h = History(capacity=5, interval_s=10)
    for i in range(12):
        functions = {"a": {"cpu_percent": 1.0, "memory_bytes": float(i)}} if i < 3 else {}
        h.add(1000.0 + i * 10, {"cpu_percent": 5.0, "memory_bytes": 100.0}, functions)
    out = h.export(since=0)
    assert out["time"] == [1070.0, 1080.0, 1090.0, 1100.0, 1110.0]
    assert out["functions"] == {} and "a" not in h.functions  # gone for a whole ring: forgotten
    assert h.export(since=1095)["time"] == [1100.0, 1110.0]
