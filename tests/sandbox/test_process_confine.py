"""Process-isolated functions run confined: their own user, no capabilities, no_new_privs, no inherited fds,
the unprivileged container's system-call filter, and no view of the admin token, the data dir, /root or another
function's environment (issue 15)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need, need_root
from tests.e2e.gateway_harness import GatewayProcess, fn

PROBE = r"""
import ctypes, json, os, signal, subprocess, threading

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
SYS_KEYCTL = 250  # x86_64

def _try(f):
    try:
        return ["ok", f()]
    except OSError as exc:
        return ["denied", exc.errno]

def handler(event, context):
    ask = json.loads(event)
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    targets = {}
    for fd in fds:
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    def write_data():
        with open(os.path.join(ask["data_dir"], "owned"), "w") as f:
            f.write("x")
        return True
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
        "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
        "fds": targets,
        "token": _try(lambda: open(os.path.join(ask["data_dir"], "admin.token")).read()),
        "data_dir": _try(lambda: os.listdir(ask["data_dir"])),
        "write_data": _try(write_data),
        "root": _try(lambda: os.listdir("/root")),
        "other_env": _try(lambda: open(f"/proc/{ask['other_pid']}/environ", "rb").read().decode(errors="replace")),
        "gateway_env": _try(lambda: open(f"/proc/{ask['gateway_pid']}/environ", "rb").read().decode(errors="replace")),
        "signal_gateway": _try(lambda: os.kill(ask["gateway_pid"], 0)),
        "signal_other": _try(lambda: os.kill(ask["other_pid"], 0)),
        "tmp_write": _try(lambda: open("/tmp/scratch", "w").write("ok")),
        "import_json_stdlib": __import__("decimal").__name__,
        "seccomp": [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0],
        "unshare_errno": _forked(lambda: libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)),
        "unshare_cmd": _run(["unshare", "-Ur", "true"]),
        "keyctl_errno": ctypes.get_errno() if libc.syscall(SYS_KEYCTL, 0, -3, 0) < 0 else 0,
        "thread": _thread(),
        "subprocess": _run(["echo", "hi"]),
    }

def _forked(call):  # in a child: a success would change this worker's own namespaces
    pid = os.fork()
    if pid == 0:
        os._exit(ctypes.get_errno() if call() < 0 else 0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def _run(argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    return [done.returncode, done.stdout + done.stderr]

def _thread():
    seen = []
    t = threading.Thread(target=lambda: seen.append(1))
    t.start()
    t.join()
    return seen
"""

SECRET = """
import os
def handler(event, context):
    return os.environ["SECRET"]
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    need_root()
    gw = GatewayProcess(
        tmp_path / "data", isolation="process", env={"EDGEFC_UNCONFINED_WORKERS": "0"}
    ).start()
    yield gw
    gw.stop()


def test_process_worker_is_confined(gateway: GatewayProcess) -> None:
    gateway.deploy(
        {"functions": [fn("probe", isolation="process", mode="on_demand"),
                       fn("other", isolation="process", mode="continuous", env={"SECRET": "hunter2-other"})]},
        {"probe": PROBE, "other": SECRET},
    )  # fmt: skip
    other = gateway.wait_for(
        lambda: [i["pid"] for i in gateway.status("other")["instances"] if i.get("pid")], what="other's pid"
    )[0]
    ask = {"data_dir": str(gateway.data_dir), "other_pid": other, "gateway_pid": gateway.pid}
    response = gateway.invoke("probe", json.dumps(ask).encode())
    assert response.status_code == 200, response.text
    seen = response.json()

    assert seen["uid"] != 0 and seen["euid"] != 0 and seen["groups"] == []
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_bnd"], 16) == 0
    assert seen["no_new_privs"] == "1"
    # Only the standard streams and the worker's own connection; nothing of the gateway's (API socket, pipes).
    # (The worker dups its stdout/stderr pipes to capture output: those are its own.)
    extra = [
        t for fd, t in seen["fds"].items() if int(fd) > 2 and t not in (seen["fds"]["1"], seen["fds"]["2"])
    ]
    assert len(extra) == 1 and extra[0].startswith("socket:"), seen["fds"]
    token = (gateway.data_dir / "admin.token").read_text().strip()
    assert token not in json.dumps(seen)
    assert seen["token"][0] == "denied"
    # The data dir shows only the paths bound back into it (its code, the worker socket's dir), never its files.
    assert seen["data_dir"][0] == "denied" or set(seen["data_dir"][1]) <= {"code", "run", "bundles"}
    assert seen["write_data"][0] == "denied"
    assert seen["root"] == ["ok", [".pyenv"]] or seen["root"][0] == "denied"
    assert seen["other_env"][0] == "denied" and "hunter2" not in json.dumps(seen)
    assert seen["gateway_env"][0] == "denied"
    assert seen["signal_gateway"][0] == "denied" and seen["signal_other"][0] == "denied"
    assert seen["tmp_write"][0] == "ok"
    assert seen["import_json_stdlib"] == "decimal"
    # The unprivileged container's system-call filter: no new (user) namespace, no kernel keyring; threads,
    # fork and exec still work.
    assert seen["seccomp"] == "2"
    assert seen["unshare_errno"] == 1, seen  # EPERM
    assert seen["unshare_cmd"][0] != 0 and "Operation not permitted" in seen["unshare_cmd"][1], seen
    assert seen["keyctl_errno"] == 1, seen
    assert seen["thread"] == [1] and seen["subprocess"] == [0, "hi\n"]
    assert not (gateway.data_dir / "owned").exists()
    assert os.path.exists(gateway.data_dir / "admin.token")


SPIN = """
import time

def handler(event, context):
    start_cpu, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < 1.0:
        pass
    return str((time.process_time() - start_cpu) / (time.monotonic() - start))
"""


def test_process_worker_gets_its_cpu_quota(gateway: GatewayProcess) -> None:
    from edgefc.sandbox.cgroups import CgroupTree

    tree = CgroupTree((gateway.data_dir / "gateway.id").read_text().strip())
    need(tree.cpu_base is not None or tree.version.value == "v2", "a cgroup cpu controller")
    gateway.deploy(
        {"functions": [fn("spin", isolation="process", cpu=0.25, timeout_s=20, idle_timeout_s=1)]},
        {"spin": SPIN},
    )
    response = gateway.invoke("spin")
    assert response.status_code == 200, response.text
    assert float(response.text) < 0.45, response.text  # a quarter of a core, with slack for accounting
    # The instance's cgroups (memory and cpu) go with it.
    gateway.wait_for(
        lambda: not gateway.status("spin")["instances"], what="the idle instance to stop", timeout=20
    )
    for base in (tree.base, tree.cpu_base):
        if base is not None and base.is_dir():
            assert not [p for p in base.iterdir() if p.is_dir()], list(base.iterdir())


SCAN = r"""
import ctypes, re

MARK = re.compile(rb"zq[0-9]{12}zq")
PR_SET_DUMPABLE = 4

def handler(event, context):
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # its own /proc files become readable again: any code can
    found = set(m.decode() for m in MARK.findall(open("/proc/self/environ", "rb").read()))
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw") or (len(fields) > 5 and not fields[5].startswith("[")):
                continue  # writable anonymous memory, heap and stack: where a parent's data would linger
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                found.update(m.decode() for m in MARK.findall(mem.read(end - start)))
            except (OSError, OverflowError, ValueError):
                pass
    return sorted(found)
"""


def test_a_worker_finds_no_other_functions_secret_nor_the_gateways_environment(tmp_path: Path) -> None:
    """The fork server sees every function's environment and key: it zeroes them once it has forked, and it runs
    with an environment of its own, so a worker (a fork of it) finds neither in its memory nor in /proc/self/environ."""
    need_root()
    rng = random.Random()
    gateway_mark, other_mark, own_mark = (f"zq{rng.randrange(10**11, 10**12)}zq" for _ in range(3))
    gw = GatewayProcess(
        tmp_path / "data", isolation="process",
        env={"EDGEFC_UNCONFINED_WORKERS": "0", "EDGEFC_TEST_MARK": gateway_mark},
    ).start()  # fmt: skip
    try:
        gw.deploy(
            {"functions": [fn("other", isolation="process", mode="continuous", env={"SECRET": other_mark}),
                           fn("scan", isolation="process", mode="on_demand", memory_mb=256, env={"OWN": own_mark})]},
            {"other": SECRET, "scan": SCAN},
        )  # fmt: skip
        gw.wait_for(lambda: [i for i in gw.status("other")["instances"] if i.get("pid")], what="other's worker")
        assert gw.invoke("other").text == other_mark  # its worker has it
        response = gw.invoke("scan")
        assert response.status_code == 200, response.text
        found = response.json()
        assert own_mark in found, found  # the scan sees what is there
        assert other_mark not in found and gateway_mark not in found, found
    finally:
        gw.stop()
