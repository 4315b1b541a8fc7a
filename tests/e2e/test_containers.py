"""Functions in runc containers through a real gateway: ports, volumes, devices, privileged, limits, bad input.

Real runc, CNI plugins and iptables; network traffic only to 127.0.0.1 (the host end of a port mapping).
The helpers at the top also serve ``test_containers_cleanup.py``: they list everything of one gateway's
container sandbox that is still on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefc.sandbox.reconcile import CGROUP_PARENT, cgroup_mounts
from edgefc.sandbox.runc import RuncSandbox
from tests.conftest import need, need_binary, need_root
from tests.e2e.gateway_harness import GatewayProcess, fn

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root, pytest.mark.needs_runc, pytest.mark.timeout(60)]


# ---- what a container gateway leaves on the host -------------------------------------------------------------


def require_containers() -> None:
    need_root()
    need_binary("runc")
    ok, why = RuncSandbox.available()
    need(ok, why)


def gateway_id(data_dir: Path) -> str:
    return (data_dir / "gateway.id").read_text().strip()


def sandbox_of(data_dir: Path) -> RuncSandbox:
    """The container sandbox as the gateway of ``data_dir`` builds it (gateway/core.py): where its runc root,
    bundles, lease pool and names are. Building one touches nothing on the host."""
    return RuncSandbox(data_dir / "run" / "runc", gateway_id=gateway_id(data_dir), data_dir=data_dir)


def container_id(data_dir: Path, instance_id: str) -> str:
    return sandbox_of(data_dir).prefix + instance_id


def runc_ids(data_dir: Path) -> list[str]:
    """Every container runc knows under the gateway's root (running or stopped)."""
    root = sandbox_of(data_dir).runc_root
    if not root.is_dir():
        return []
    out = subprocess.run(
        ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=True
    )
    return sorted(out.stdout.split())


def _cni_chains(network: str, cid: str) -> list[str]:
    # The bridge (ipMasq) and portmap plugins name their per-container chains after sha512(network + id).
    digest = hashlib.sha512((network + cid).encode()).hexdigest()
    return [f"CNI-{digest}"[:28], f"CNI-DN-{digest}"[:28]]


def _json_of(*argv: str) -> Any:
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout or "[]")


def leftovers(data_dir: Path, ids: Iterable[str] | None = None) -> list[str]:
    """What the host still holds of this gateway's containers: all of them, or only the container ``ids``.

    Containers (runc list), cgroups in every hierarchy, network namespaces, veths whose peer is in one of
    them, IPAM leases, iptables rules and per-container CNI chains, bundles, and any process (``runc run``
    or a container's own) that names one of them.
    """
    box = sandbox_of(data_dir)
    wanted = set(ids) if ids is not None else None

    def ours(name: str) -> bool:
        return name.startswith(box.prefix) and (wanted is None or name in wanted)

    found = [f"container {c}" for c in runc_ids(data_dir) if ours(c)]
    for mount in cgroup_mounts():
        parent = mount / CGROUP_PARENT
        if parent.is_dir():
            found += [f"cgroup {p}" for p in sorted(parent.iterdir()) if ours(p.name)]
    our_ns = {n["name"]: n.get("id") for n in _json_of("ip", "-j", "netns", "list") if ours(n["name"])}
    found += [f"netns {n}" for n in sorted(our_ns)]
    ns_ids = {i for i in our_ns.values() if i is not None}
    veths = _json_of("ip", "-j", "link", "show", "type", "veth")
    found += [f"veth {v['ifname']}" for v in veths if v.get("link_netnsid") in ns_ids]
    assert box.net is not None
    pool = box.net.ipam_dir / box.net.name
    for lease in sorted(pool.iterdir()) if pool.is_dir() else []:
        try:
            owner = lease.read_text().split() if lease.name[0].isdigit() else []
        except FileNotFoundError:  # released while we looked
            continue
        if owner and ours(owner[0]):
            found.append(f"lease {lease.name} {owner[0]}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout.splitlines()
    if wanted is None:
        found += [f"rule {r}" for r in rules if box.prefix in r]
    else:
        chains = {c for cid in wanted for c in _cni_chains(box.net.name, cid)}
        found += [f"rule {r}" for r in rules if any(x in r for x in wanted | chains)]
    if box.bundles.is_dir():
        found += [f"bundle {b.name}" for b in box.bundles.iterdir() if ours(b.name)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(ours(a.decode(errors="replace")) for a in argv):
            found.append(f"process {proc.name} {b' '.join(argv).decode(errors='replace')[:200]}")
    return found


def wait_clean(gw: GatewayProcess, ids: Iterable[str] | None = None, timeout: float = 10.0) -> None:
    """Poll until nothing of ours (or of ``ids``) is left; fails listing what stayed."""
    gw.wait_for(lambda: not leftovers(gw.data_dir, ids), timeout=timeout, what="container cleanup")


def process_cgroup_dirs(data_dir: Path) -> list[Path]:
    """The process sandbox's per-gateway cgroup folders (``edgefc/<gateway id>``) still on the host."""
    gid = gateway_id(data_dir)
    return [
        mount / CGROUP_PARENT / gid for mount in cgroup_mounts() if (mount / CGROUP_PARENT / gid).is_dir()
    ]


def host_leftovers(data_dir: Path) -> list[str]:
    """What a stopped gateway must not leave: anything of its containers, and its own cgroup folders."""
    return leftovers(data_dir) + [f"cgroup {p}" for p in process_cgroup_dirs(data_dir)]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, timeout: float = 2.0) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=timeout).text


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


def instance_ids(gw: GatewayProcess, name: str) -> list[str]:
    return [i["id"] for i in gw.status(name)["instances"]]


# ---- one container gateway for this module ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    require_containers()
    gateway = GatewayProcess(tmp_path_factory.mktemp("containers") / "data", isolation="container").start()
    try:
        yield gateway
    finally:
        gateway.stop()
    assert not host_leftovers(gateway.data_dir), host_leftovers(gateway.data_dir)


# A continuous function serving HTTP inside its own network namespace; the port comes from its config.
SERVER = """
import json, os, socket, threading, http.server
import edgefc.sdk as fc

class Reply(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["FUNCTION_NAME"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def echo(sock):
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(b"echo " + data, peer)

def init(context):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", fc.config()["port"]), Reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if "udp" in fc.config():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", fc.config()["udp"]))
        threading.Thread(target=echo, args=(sock,), daemon=True).start()

def handler(event, context):
    request = json.loads(event or b"{}")
    answers = {"uid": os.getuid()}
    # From inside: its own server answers on loopback; the gateway's API on the host's loopback does not.
    for key, port in request.items():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                answers[key] = data.decode(errors="replace").split("\\r\\n\\r\\n", 1)[-1]
        except OSError as exc:
            answers[key] = type(exc).__name__
    return answers
"""


def udp_echo(port: int, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recvfrom(2048)[0]


def test_port_mapping_reaches_port_80_and_unmapped_ports_stay_inside(gw: GatewayProcess) -> None:
    host_port, other_port, udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    api_port = int(gw.url.rsplit(":", 1)[1])
    manifest = {"functions": [
        fn("fc-http-server", mode="continuous", initializer="index.init", config={"port": 80, "udp": 53},
           container={"ports": [f"{host_port}:80/tcp", f"{udp_port}:53/udp"]}),
        fn("fc-other", mode="continuous", initializer="index.init", config={"port": other_port}),
    ]}  # fmt: skip
    gw.deploy(manifest, {"fc-http-server": SERVER, "fc-other": SERVER})
    assert gw.status("fc-http-server")["isolation"] == "container"

    assert http_get(host_port) == "hello from fc-http-server"
    assert udp_echo(udp_port, b"ping") == b"echo ping"
    inside = gw.invoke("fc-http-server", json.dumps({"own": 80, "api": api_port}).encode()).json()
    assert inside["uid"] == 65534  # port 80 bound by an unprivileged user, in its own netns
    assert inside["own"] == "hello from fc-http-server"
    assert inside["api"] == "ConnectionRefusedError"  # the host's loopback is not the container's

    # fc-other really listens (on its own loopback) but nothing maps its port onto the host.
    assert (
        gw.invoke("fc-other", json.dumps({"own": other_port}).encode()).json()["own"] == "hello from fc-other"
    )
    assert refused(other_port)

    # Undeployed: the mapping goes with the container.
    gw.deploy({"functions": [manifest["functions"][1]]}, {"fc-other": SERVER})
    gw.wait_for(lambda: refused(host_port), what=f"127.0.0.1:{host_port} to close")


FILES = """
import json, os

def probe(path):
    try:
        if os.path.isdir(path):
            return {"list": sorted(os.listdir(path))}
        with open(path, "rb") as f:
            return {"read": f.read(200).decode(errors="replace")}
    except OSError as exc:
        return {"error": type(exc).__name__}

def write(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
        return "ok"
    except OSError as exc:
        return type(exc).__name__

def handler(event, context):
    request = json.loads(event)
    return {
        "probes": {path: probe(path) for path in request["probe"]},
        "writes": {path: write(path, "written by uid %d" % os.getuid()) for path in request["write"]},
    }
"""


def test_volumes_are_read_and_written_and_nothing_else_of_the_host_is_visible(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    for folder in (rw, ro):
        folder.mkdir()
        folder.chmod(0o777)
        (folder / "hello.txt").write_text(f"hello from {folder.name}")
    manifest = {"functions": [
        fn("fc-files", container={"volumes": [f"{rw}:/data:rw", f"{ro}:/config:ro"]}),
        fn("fc-secret", mode="continuous"),
    ]}  # fmt: skip
    gw.deploy(
        manifest, {"fc-files": FILES, "fc-secret": "def handler(event, context):\n    return 'secret'\n"}
    )
    secret_code = gw.data_dir / "code" / gw.status("fc-secret")["code_sha256"]
    assert (secret_code / "index.py").is_file()
    host_root = sorted(set(os.listdir("/root")) - {".pyenv"})  # the Python may live under /root (DESIGN §8)
    assert host_root, "the host's /root has nothing to hide"
    probe = ["/data/hello.txt", "/config/hello.txt", "/root", str(gw.data_dir), str(gw.data_dir / "admin.token"),
             str(secret_code / "index.py"), str(secret_code), "/etc/shadow", "/code"]  # fmt: skip
    request = {"probe": probe, "write": ["/data/out.txt", "/config/out.txt", "/code/out.txt", "/etc/out.txt"]}
    response = gw.invoke("fc-files", json.dumps(request).encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    probes, writes = answer["probes"], answer["writes"]

    assert probes["/data/hello.txt"] == {"read": "hello from rw"}
    assert probes["/config/hello.txt"] == {"read": "hello from ro"}
    assert writes["/data/out.txt"] == "ok"
    assert (rw / "out.txt").read_text() == "written by uid 65534"
    assert (rw / "out.txt").stat().st_uid == 65534
    assert writes["/config/out.txt"] == "OSError"  # EROFS: a read-only volume
    assert not (ro / "out.txt").exists()
    assert writes["/code/out.txt"] == "OSError" and writes["/etc/out.txt"] in ("OSError", "PermissionError")

    assert probes["/code"] == {"list": ["index.py"]}  # its own code, nothing else
    root_seen = probes["/root"].get("list", [])
    assert not set(root_seen) & set(host_root), f"host /root visible: {root_seen}"
    for path in (
        str(gw.data_dir),
        str(gw.data_dir / "admin.token"),
        str(secret_code),
        str(secret_code / "index.py"),
        "/etc/shadow",
    ):
        assert probes[path] == {"error": "FileNotFoundError"}, (path, probes[path])


def _spare_device() -> Path:
    """A harmless device node that is not in runc's default set: an unattached loop device reads as empty."""
    for n in range(7, -1, -1):
        path = Path(f"/dev/loop{n}")
        if path.exists() and stat.S_ISBLK(path.stat().st_mode):
            return path
    need(False, "a /dev/loopN block device to map")
    raise AssertionError("unreachable")


DEVICES = """
import json, os

def handler(event, context):
    answers = {}
    for path in json.loads(event):
        entry = {"exists": os.path.exists(path)}
        for mode in ("rb", "wb"):
            try:
                with open(path, mode, buffering=0) as f:
                    entry[mode] = f.read(8).hex() if mode == "rb" else "opened"
            except OSError as exc:
                entry[mode] = type(exc).__name__
        answers[path] = entry
    return answers
"""


def test_mapped_device_is_readable_and_unmapped_ones_are_absent(gw: GatewayProcess) -> None:
    device = _spare_device()
    gw.deploy({"functions": [fn("fc-dev", mode="continuous", container={"devices": [f"{device}:/dev/mydev:r"]})]},
              {"fc-dev": DEVICES})  # fmt: skip
    answer = gw.invoke(
        "fc-dev", json.dumps(["/dev/mydev", str(device), "/dev/kmsg", "/dev/loop-control"]).encode()
    ).json()
    assert answer["/dev/mydev"] == {
        "exists": True,
        "rb": "",
        "wb": "PermissionError",
    }  # r only: the device cgroup refuses w
    for absent in (str(device), "/dev/kmsg", "/dev/loop-control"):
        assert answer[absent]["exists"] is False, (absent, answer[absent])
    # The device cgroup of the container allows exactly that node (beyond runc's defaults), read only.
    cid = container_id(gw.data_dir, instance_ids(gw, "fc-dev")[0])
    allowed = Path("/sys/fs/cgroup/devices") / CGROUP_PARENT / cid / "devices.list"
    if allowed.exists():  # cgroup v1
        rdev = device.stat().st_rdev
        rules = allowed.read_text().split("\n")
        assert f"b {os.major(rdev)}:{os.minor(rdev)} r" in rules
        # runc's defaults allow mknod of any node ("b *:* m"), never reading or writing another block device.
        others = [r for r in rules if r.startswith("b ") and r != f"b {os.major(rdev)}:{os.minor(rdev)} r"]
        assert not [r for r in others if set(r.split()[-1]) & set("rw")], others


MOUNTER = """
import ctypes, os

def handler(event, context):
    libc = ctypes.CDLL(None, use_errno=True)
    target = "/tmp/mnt"
    os.makedirs(target, exist_ok=True)
    if libc.mount(b"edgefc-test", target.encode(), b"tmpfs", 0, b"size=1m") != 0:
        return {"uid": os.getuid(), "mounted": False, "errno": os.strerror(ctypes.get_errno())}
    with open("/proc/self/mounts") as f:
        seen = any(line.split()[1] == target for line in f)
    libc.umount(target.encode())
    return {"uid": os.getuid(), "mounted": seen, "kmsg": os.path.exists("/dev/kmsg")}
"""


def test_privileged_can_mount_a_tmpfs_and_unprivileged_cannot(gw: GatewayProcess) -> None:
    gw.deploy({"functions": [fn("fc-priv", container={"privileged": True}), fn("fc-plain")]},
              {"fc-priv": MOUNTER, "fc-plain": MOUNTER})  # fmt: skip
    assert gw.invoke("fc-priv").json() == {"uid": 0, "mounted": True, "kmsg": True}  # and the host's /dev
    assert gw.invoke("fc-plain").json() == {
        "uid": 65534,
        "mounted": False,
        "errno": "Operation not permitted",
    }


HOG = """
def handler(event, context):
    if event == b"hog":
        chunks = []
        for _ in range(400):
            chunks.append(bytearray(1024 * 1024))
            chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])
        return "survived"
    if event == b"hang":
        import time
        time.sleep(30)
    return "ok"
"""


def test_oom_kill_in_a_container_is_502_out_of_memory_and_it_serves_again(gw: GatewayProcess) -> None:
    gw.deploy({"functions": [fn("fc-hog", memory_mb=48, timeout_s=10)]}, {"fc-hog": HOG})
    assert gw.invoke("fc-hog", b"warm").content == b"ok"
    killed = container_id(gw.data_dir, instance_ids(gw, "fc-hog")[0])
    response = gw.invoke("fc-hog", b"hog")
    assert response.status_code == 502, response.text
    assert response.headers["X-Edgefc-Error-Type"] == "OutOfMemory"
    assert response.json()["error"]["type"] == "OutOfMemory"
    assert gw.status("fc-hog")["last_exit"]["reason"] == "oom"
    assert gw.invoke("fc-hog", b"again").content == b"ok"
    assert gw.status("fc-hog")["isolation"] == "container"
    wait_clean(gw, [killed])


def test_timeout_kill_in_a_container_is_504_and_the_container_is_removed(gw: GatewayProcess) -> None:
    gw.deploy({"functions": [fn("fc-slow", timeout_s=1)]}, {"fc-slow": HOG})
    assert gw.invoke("fc-slow", b"warm").content == b"ok"
    killed = container_id(gw.data_dir, instance_ids(gw, "fc-slow")[0])
    assert killed in runc_ids(gw.data_dir)
    response = gw.invoke("fc-slow", b"hang")
    assert response.status_code == 504 and response.headers["X-Edgefc-Error-Type"] == "Timeout"
    assert gw.invoke("fc-slow", b"next").content == b"ok"
    assert gw.status("fc-slow")["timeouts"] == 1
    wait_clean(gw, [killed])
    # The killed instance's exit is recorded once its container is torn down, which may trail the 504.
    gw.wait_for(
        lambda: (gw.status("fc-slow")["last_exit"] or {}).get("reason") == "timeout", what="last_exit"
    )
    assert container_id(gw.data_dir, instance_ids(gw, "fc-slow")[0]) in runc_ids(gw.data_dir)


ECHO = "def handler(event, context):\n    return event\n"


def test_status_shows_the_isolation_each_gateway_gives(gw: GatewayProcess, tmp_path: Path) -> None:
    manifest = {"functions": [fn("fc-iso")]}
    gw.deploy(manifest, {"fc-iso": ECHO})
    assert gw.status("fc-iso")["isolation"] == "container"
    listed = gw.client.get("/v1/functions").json()  # type: ignore[union-attr]
    entries = listed if isinstance(listed, list) else listed.get("functions", [])
    assert [f["isolation"] for f in entries if f["name"] == "fc-iso"] == ["container"]

    plain = GatewayProcess(tmp_path / "data", isolation="process").start()
    try:
        plain.deploy(manifest, {"fc-iso": ECHO})
        assert plain.status("fc-iso")["isolation"] == "process"
        assert plain.invoke("fc-iso", b"x").content == b"x"
        response = plain.deploy({"version": "want-container", "functions": [fn("fc-iso", isolation="container")]},
                                {"fc-iso": ECHO}, expect=422)  # fmt: skip
        error = response.json()["error"]
        assert error["type"] == "ValidationError"
        assert any(p.startswith("functions[0].isolation:") and "container" in p for p in error["details"]), (
            error
        )
        assert plain.status("fc-iso")["isolation"] == "process"
        assert plain.client.get("/v1/deployment").json()["version"] != "want-container"  # type: ignore[union-attr]
    finally:
        plain.stop()
    assert not process_cgroup_dirs(plain.data_dir)


def _bad_inputs(tmp: Path, taken: int) -> list[tuple[str, list[dict[str, Any]], str, str]]:
    """(case, functions, field path expected in a problem, words expected in it)."""
    p1, p2 = free_port(), free_port()
    return [
        ("port taken", [fn("fc-a", container={"ports": [f"{taken}:80/tcp"]})],
         "functions[0].container.ports[0]", "in use"),
        ("duplicate host ports", [fn("fc-a", container={"ports": [f"{p1}:80"]}), fn("fc-b", container={"ports": [f"{p1}:81/tcp"]})],
         "functions[1].container.ports", "fc-a"),
        ("missing device", [fn("fc-a", container={"devices": ["/dev/edgefc-no-such-device:/dev/x"]})],
         "functions[0].container.devices[0]", "does not exist"),
        ("missing volume source", [fn("fc-a", container={"volumes": [f"{tmp}/no-such-dir:/data"]})],
         "functions[0].container.volumes[0]", "does not exist"),
        ("relative volume", [fn("fc-a", container={"volumes": ["data:/data:rw"]})],
         "functions[0].container.volumes[0]", "absolute"),
        ("relative volume target", [fn("fc-a", container={"volumes": [f"{tmp}:data"]})],
         "functions[0].container.volumes[0]", "absolute"),
        ("relative device", [fn("fc-a", container={"devices": ["dev/null:/dev/x"]})],
         "functions[0].container.devices[0]", "absolute"),
        ("privileged with devices", [fn("fc-a", container={"privileged": True, "devices": ["/dev/null:/dev/x"]})],
         "functions[0].container.devices", "privileged"),
        ("eleven ports", [fn("fc-a", container={"ports": [f"{p2 + i}:{80 + i}" for i in range(11)]})],
         "functions[0].container.ports", "at most 10"),
    ]  # fmt: skip


def test_bad_container_input_is_422_naming_the_field_and_nothing_is_applied(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    gw.deploy({"version": "good-1", "functions": [fn("fc-keep", mode="continuous")]}, {"fc-keep": ECHO})
    before = gw.status("fc-keep")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        failures = []
        for case, functions, where, words in _bad_inputs(tmp_path, taken):
            manifest = {"version": "bad-1", "functions": [fn("fc-keep", mode="continuous"), *functions]}
            # The bad function comes second: shift the expected index by one.
            where = where.replace("functions[1]", "functions[2]").replace("functions[0]", "functions[1]")
            sources = {f["name"]: ECHO for f in manifest["functions"]}
            try:
                response = gw.deploy(manifest, sources, expect=422)
            except AssertionError as exc:  # the harness names the status and body it got instead
                failures.append(f"{case}: {str(exc)[:300]}")
                continue
            problems = response.json()["error"].get("details") or [response.json()["error"]["message"]]
            if not any(where in p and words in p for p in problems):
                failures.append(f"{case}: no problem naming {where!r} with {words!r} in {problems}")
    assert not failures, "\n".join(failures)
    deployment = gw.client.get("/v1/deployment").json()  # type: ignore[union-attr]
    assert deployment["version"] == "good-1"
    after = gw.status("fc-keep")
    assert instance_ids(gw, "fc-keep") == [i["id"] for i in before["instances"]] and after["restarts"] == 0
    names = {f["name"] for f in gw.client.get("/v1/functions").json()}  # type: ignore[union-attr]
    assert names == {"fc-keep"}
