"""No child of the gateway inherits its API's listening socket (issue 15: a function accept()ed on it, took CLI
requests and their bearer token, and kept the port after a gateway SIGKILL)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import psutil

from tests.conftest import need_binary, need_root
from tests.e2e.gateway_harness import EDGEFC, GatewayProcess, fn
from tests.e2e.mqtt_peer import free_port

FDS = """
import os
def handler(event, context):
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return out
"""


def _listening_inode(port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # 0A: LISTEN
                return cols[9]
    raise AssertionError(f"nothing listens on port {port}")


def _fds(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return found


def test_no_child_inherits_the_api_socket(tmp_path: Path) -> None:
    need_root()
    need_binary("mosquitto")
    config = {"mqtt": {"broker": "managed", "listen": f"127.0.0.1:{free_port()}"}}
    gw = GatewayProcess(
        tmp_path / "data", isolation="process", config=config, env={"EDGEFC_UNCONFINED_WORKERS": "0"}
    )
    gw.start()
    try:
        gw.deploy({"functions": [fn("fds", isolation="process")]}, {"fds": FDS})
        response = gw.invoke("fds")
        assert response.status_code == 200, response.text
        api = f"socket:[{_listening_inode(int(gw.url.rsplit(':', 1)[1]))}]"
        assert api in _fds(gw.pid)
        assert api not in response.json().values(), response.json()
        children = psutil.Process(gw.pid).children(recursive=True)
        names = {c.name() for c in children}
        assert "mosquitto" in names and len(children) >= 3, names  # fork server, worker, broker
        for child in children:
            assert api not in _fds(child.pid), f"{child.name()} (pid {child.pid}) holds the API socket"
    finally:
        gw.stop()


def test_a_taken_port_names_its_holder(tmp_path: Path) -> None:
    need_root()  # seeing another process's sockets
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([*EDGEFC, "gateway", "run", "--data-dir", str(tmp_path / "d"), "--listen",
                               f"127.0.0.1:{port}", "--isolation", "process"], capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"held by pid {os.getpid()}".encode() in done.stderr, done.stderr[-2000:]
