"""A full disk must not leak cgroups or workers on a cold start (issue 15: cold starts needed disk for a pidfile
and left empty cgroups behind when it was full)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from edgefc.sandbox.cgroups import CgroupTree
from tests.conftest import need, need_root
from tests.e2e.gateway_harness import GatewayProcess, fn, zip_of

HELLO = "def handler(event, context):\n    return 'hi'\n"
SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(30)\n"


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


def _clean_507(response: httpx.Response, what: str, data_dir: Path) -> None:
    """A 507 in the API's error shape naming ``what``, with no path of the gateway's in it."""
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["type"] == "InsufficientStorage", error
    assert what in error["message"], error
    for leak in (str(data_dir), "/tmp", "Errno", ".tmp"):
        assert leak not in response.text, response.text


def test_writes_on_a_full_disk_answer_507_and_change_nothing(tmp_path: Path) -> None:
    need_root()
    with small_disk(tmp_path / "disk") as disk:
        gw = GatewayProcess(disk / "data", isolation="process")
        gw.log_path = tmp_path / "gateway.log"  # off the full disk, so that it tells what happened
        gw.start()
        try:
            # Messages to t/# queue durably for "sink", which takes its time: they stay in the queue.
            routes = [{"name": "in", "source": "api", "topic": "t/#", "target": "function:sink", "qos": 1}]
            gw.deploy({"functions": [fn("hello"), fn("sink", timeout_s=60)], "routes": routes},
                      {"hello": HELLO, "sink": SLOW})  # fmt: skip
            assert gw.client is not None
            before = gw.client.get("/v1/deployment").json()
            fill(disk)
            # A deploy of new code (random, so it does not compress): 507, and the old version still runs.
            blob = os.urandom(3 << 20).hex()
            manifest = yaml.safe_dump({"functions": [fn("hello"), fn("other"), fn("sink", timeout_s=60)],
                                       "routes": routes}).encode()  # fmt: skip
            files = [
                ("manifest", ("deployment.yaml", manifest, "application/yaml")),
                ("hello", ("hello.zip", zip_of({"index.py": HELLO}), "application/zip")),
                ("sink", ("sink.zip", zip_of({"index.py": SLOW}), "application/zip")),
                ("other", ("other.zip", zip_of({"index.py": HELLO, "blob.txt": blob}), "application/zip")),
            ]
            response = gw.client.put("/v1/deployment", files=files, timeout=60)
            _clean_507(response, "deployment", gw.data_dir)
            assert gw.client.get("/v1/deployment").json() == before
            assert gw.client.get("/v1/functions/other").status_code == 404
            assert gw.invoke("hello").status_code == 200
            # An async invocation is either durably accepted or refused with 507, never a 500.
            payload = os.urandom(4 << 20)
            response = gw.invoke("hello", payload, headers={"X-Edgefc-Invocation-Type": "async"})
            _clean_507(response, "async invocation", gw.data_dir)
            # A QoS 1 message must be durably queued before its 202: on a full disk it is refused with 507.
            message = {"topic": "t/full", "qos": 1, "payload": os.urandom(100_000).hex()}
            for _ in range(30):  # the queue may have a little room left in pages it already holds
                response = gw.client.post("/v1/messages", json=message)
                if response.status_code != 202:
                    break
            _clean_507(response, "message", gw.data_dir)
            assert gw.invoke("hello").status_code == 200
        finally:
            gw.stop()
            with contextlib.suppress(OSError):
                os.unlink(disk / "filler")
