"""A full disk must not leak cgroups or workers on a cold start (issue 15: cold starts needed disk for a pidfile
and left empty cgroups behind when it was full)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from edgefc.sandbox.cgroups import CgroupTree
from tests.conftest import need, need_root
from tests.e2e.gateway_harness import GatewayProcess, fn

HELLO = "def handler(event, context):\n    return 'hi'\n"


@contextlib.contextmanager
def small_disk(path: Path, size: str = "24m") -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    with open(path / "filler", "wb") as f:
        chunk = b"\0" * (1 << 20)
        while True:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    for i in range(10_000):  # the last blocks, and inodes too
        try:
            (path / f"f{i}").write_bytes(b"x" * 4096)
        except OSError:
            break


def test_cold_start_on_a_full_disk_leaks_nothing(tmp_path: Path) -> None:
    need_root()
    ok, why = CgroupTree.usable()
    need(ok, why)
    with small_disk(tmp_path / "disk") as disk:
        gw = GatewayProcess(disk / "data", isolation="process").start()
        try:
            gw.deploy({"functions": [fn("hello", idle_timeout_s=1)]}, {"hello": HELLO})
            gid = (gw.data_dir / "gateway.id").read_text().strip()
            tree = CgroupTree(gid)
            fill(disk)
            for _ in range(3):
                response = gw.invoke("hello")
                assert response.status_code in (200, 507), response.text
            assert response.status_code == 200, response.text  # a cold start needs no disk
            # Every instance cgroup belongs to a live, known instance: none left empty, none with an orphan.
            known = {i["id"] for i in gw.status("hello")["instances"]}
            on_disk = {p.name for p in tree.base.iterdir() if p.is_dir()} if tree.base.is_dir() else set()
            assert on_disk <= known, (on_disk, known)
            gw.wait_for(
                lambda: not gw.status("hello")["instances"], what="the idle instance to stop", timeout=20
            )
            left = {p.name for p in tree.base.iterdir() if p.is_dir()} if tree.base.is_dir() else set()
            assert not left, left
        finally:
            gw.stop()
            with contextlib.suppress(OSError):
                os.unlink(disk / "filler")
