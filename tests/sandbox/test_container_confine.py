"""Unprivileged containers get the Docker default seccomp policy, a pids limit, a sized /tmp and an optional CPU
quota (issue 15: ``unshare -Ur`` gave a full capability set in a new user namespace, ``keyctl`` worked, no CPU
limit). Real runc, through a real gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefc.sandbox.runc import RuncSandbox
from tests.conftest import need, need_binary, need_root
from tests.e2e.gateway_harness import GatewayProcess, fn

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_runc]

PROBE = r"""
import ctypes, errno, os, subprocess, time

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
SYS_KEYCTL = 250  # x86_64
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3

def _errno(result):
    return 0 if result >= 0 else ctypes.get_errno()

def handler(event, context):
    out = {}
    pid = os.fork()
    if pid == 0:  # unshare in a child: a success would change this worker's own namespaces
        os._exit(_errno(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)))
    out["unshare_errno"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    run = subprocess.run(["unshare", "-Ur", "cat", "/proc/self/status"], capture_output=True, text=True)
    out["unshare_cmd"] = [run.returncode, run.stdout + run.stderr]
    out["keyctl_errno"] = _errno(libc.syscall(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0))
    out["seccomp"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0]
    st = os.statvfs("/tmp")
    out["tmp_bytes"] = st.f_blocks * st.f_frsize
    start_cpu, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < 1.0:
        pass
    out["cpu_share"] = (time.process_time() - start_cpu) / (time.monotonic() - start)
    return out
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    need_root()
    need_binary("runc")
    ok, why = RuncSandbox.available()
    need(ok, why)
    gw = GatewayProcess(tmp_path / "data", isolation="container").start()
    yield gw
    gw.stop()


def test_unprivileged_container_is_filtered_and_limited(gateway: GatewayProcess) -> None:
    gateway.deploy(
        {"functions": [fn("probe", cpu=0.25, timeout_s=20, container={"host_network": True})]},
        {"probe": PROBE},
    )
    response = gateway.invoke("probe")
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["seccomp"] == "2"  # filter mode
    assert seen["unshare_errno"] == 1, seen  # EPERM: no new (user) namespace
    assert seen["unshare_cmd"][0] != 0 and "Operation not permitted" in seen["unshare_cmd"][1], seen[
        "unshare_cmd"
    ]
    assert seen["keyctl_errno"] == 1, seen  # EPERM: no kernel keyring
    assert seen["tmp_bytes"] <= 64 * 2**20
    assert seen["cpu_share"] < 0.45, seen  # a quarter of a core, with slack for accounting
    config = json.loads(next((gateway.data_dir / "run" / "runc").rglob("config.json")).read_text())
    assert config["linux"]["resources"]["pids"]["limit"] > 0
