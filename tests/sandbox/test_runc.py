"""The container sandbox with real runc, CNI plugins and iptables: lifecycle, limits, mappings, no leftovers."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefc.sandbox import cni
from edgefc.sandbox.base import ContainerSpec, ExitStatus, InstanceSpec
from edgefc.sandbox.reconcile import CGROUP_PARENT, cgroup_mounts
from edgefc.sandbox.runc import RuncSandbox
from tests.conftest import need, need_binary, need_root

pytestmark = pytest.mark.timeout(60)


def _require() -> None:
    need_root()
    need_binary("runc")
    ok, why = RuncSandbox.available()
    need(ok, why)


def leftovers(prefix: str, bridge: str) -> list[str]:
    """Everything of ours the host still holds: containers, cgroups, netns, veths, IPAM leases, rules."""
    found = []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line}" for line in out.splitlines() if line.startswith(prefix)]
    for mount in cgroup_mounts():
        found += [f"cgroup {p}" for p in (mount / CGROUP_PARENT).glob(f"{prefix}*")]
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"rule {line}" for line in out.splitlines() if prefix in line]
    brif = Path("/sys/class/net") / bridge / "brif"
    if brif.is_dir():
        found += [f"veth {name}" for name in os.listdir(brif)]
    return found


def drop_bridge(box: RuncSandbox) -> None:
    if box.net is not None:
        subprocess.run(["ip", "link", "delete", box.net.bridge], capture_output=True)


def runc_ids(sandbox: RuncSandbox) -> list[str]:
    out = subprocess.run(
        ["runc", "--root", str(sandbox.runc_root), "list", "-q"], capture_output=True, text=True
    )
    return out.stdout.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_sandbox(tmp_path: Path, gateway_id: str | None = None) -> RuncSandbox:
    gw = gateway_id or "t" + secrets.token_hex(4)
    # A bridge and subnet of the test's own, so parallel gateways on this host are never touched.
    n = int(gw[-4:], 16)
    return RuncSandbox(tmp_path / "state", gateway_id=gw, data_dir=tmp_path / "data",
                       bridge=f"efct{gw[-6:]}", subnet=f"10.{200 + n % 50}.{n % 250}.0/24")  # fmt: skip


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[RuncSandbox]:
    _require()
    (tmp_path / "data").mkdir()
    box = make_sandbox(tmp_path)
    await box.open()
    try:
        yield box
    finally:
        await box.close()
        assert box.instances == {}
        assert runc_ids(box) == []
        assert leftovers(box.prefix, box.net.bridge if box.net else "") == []
        await asyncio.to_thread(drop_bridge, box)


def spec_for(tmp_path: Path, name: str = "a", *, memory_mb: int = 64, container: ContainerSpec | None = None,
             code: dict[str, str] | None = None) -> InstanceSpec:  # fmt: skip
    code_dir = tmp_path / f"code-{name}"
    code_dir.mkdir(exist_ok=True)
    for file, text in (code or {}).items():
        (code_dir / file).write_text(textwrap.dedent(text))
    sock = tmp_path / "worker.sock"
    sock.touch()
    return InstanceSpec(instance_id=f"{name}-{secrets.token_hex(3)}", function=f"fn-{name}", code_dir=code_dir,
                        env={"FUNCTION_NAME": f"fn-{name}"}, memory_mb=memory_mb, socket_path=sock, key="k" * 16,
                        container=container or ContainerSpec())  # fmt: skip


def py(*args: str) -> list[str]:
    return [sys.executable, "-I", *args]


async def poll(check: object, timeout: float = 10.0) -> None:
    """Poll ``check()`` until it is truthy or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_exit_code_environment_and_confinement(sandbox: RuncSandbox, tmp_path: Path) -> None:
    secret = Path("/root") / f"efc-secret-{secrets.token_hex(4)}"
    secret.write_text("x")
    (tmp_path / "data" / "db").write_text("x")
    other = spec_for(tmp_path, "other", code={"secret.py": "x = 1\n"})
    probe = f"""
        import json, os, sys
        def writable(p):
            try:
                open(p, "w").close(); return True
            except OSError:
                return False
        print(json.dumps({{
            "uid": os.getuid(), "cwd": os.getcwd(), "env": dict(os.environ), "pid1": os.getpid() == 1,
            "root_secret": os.path.exists({str(secret)!r}), "data": os.path.exists({str(tmp_path / "data")!r}),
            "other_code": os.path.exists({str(other.code_dir)!r}), "code": os.listdir("/code"),
            "etc_w": writable("/etc/x"), "code_w": writable("/code/x"), "tmp_w": writable("/tmp/x"),
            "socket": os.path.exists("/run/edgefc/worker.sock"), "edgefc": __import__("edgefc").__name__,
        }}))
        sys.exit(7)
    """
    spec = spec_for(tmp_path, code={"probe.py": probe})
    try:
        instance = await sandbox.start(spec, argv=py("probe.py"))
        assert instance.pid is not None and instance.returncode is None
        status = await instance.wait()
    finally:
        secret.unlink()
    assert status == ExitStatus(7, oom=False), instance.output
    assert instance.returncode == 7
    facts = json.loads(instance.output.decode().splitlines()[-1])
    assert facts["uid"] == 65534 and facts["cwd"] == "/code" and facts["pid1"]
    env = facts["env"]
    assert env["EDGEFC_WORKER_SOCKET"] == "/run/edgefc/worker.sock" and env["EDGEFC_WORKER_CODE"] == "/code"
    assert env["EDGEFC_WORKER_INSTANCE"] == spec.instance_id and env["EDGEFC_WORKER_KEY"] == spec.key
    assert env["FUNCTION_NAME"] == "fn-a" and "PATH" in env
    assert not facts["root_secret"] and not facts["data"] and not facts["other_code"]
    assert facts["code"] == ["probe.py"] and facts["socket"] and facts["edgefc"] == "edgefc"
    assert (facts["etc_w"], facts["code_w"], facts["tmp_w"]) == (False, False, True)


async def test_memory_limit_is_an_oom_kill(sandbox: RuncSandbox, tmp_path: Path) -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20))\n"
    instance = await sandbox.start(spec_for(tmp_path, memory_mb=48, code={"hog.py": hog}), argv=py("hog.py"))
    status = await instance.wait()
    assert status == ExitStatus(-signal.SIGKILL, oom=True)
    # A plain exit is not reported as an OOM.
    instance = await sandbox.start(spec_for(tmp_path, "b"), argv=py("-c", "x = bytearray(8 << 20)"))
    assert await instance.wait() == ExitStatus(0, oom=False)


async def test_stop_is_term_then_kill_and_cleans_up(sandbox: RuncSandbox, tmp_path: Path) -> None:
    polite = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
        open("/tmp/ready", "w").close()
        print("up", flush=True)
        while True:
            time.sleep(1)
    """
    stubborn = polite.replace("sys.exit(3)", "None")
    a = await sandbox.start(spec_for(tmp_path, "a", code={"p.py": polite}), argv=py("p.py"))
    b = await sandbox.start(spec_for(tmp_path, "b", code={"p.py": stubborn}), argv=py("p.py"))
    for inst in (a, b):
        await poll(lambda i=inst: b"up" in sandbox.release_output(i.container_id, keep=True))
        assert inst.memory_bytes() and inst.cpu_seconds() is not None
    started = time.monotonic()
    assert await a.stop(grace=5) == ExitStatus(3)
    assert time.monotonic() - started < 4
    assert await b.stop(grace=0.3) == ExitStatus(-signal.SIGKILL)
    assert a.memory_bytes() is None and runc_ids(sandbox) == []
    assert leftovers(sandbox.prefix, sandbox.net.bridge if sandbox.net else "") == []
    # kill() and a cancelled stop() both end the container and still clean up.
    c = await sandbox.start(spec_for(tmp_path, "c", code={"p.py": stubborn}), argv=py("p.py"))
    d = await sandbox.start(spec_for(tmp_path, "d", code={"p.py": stubborn}), argv=py("p.py"))
    c.kill()
    assert (await c.wait()).code == -signal.SIGKILL
    stopping = asyncio.create_task(d.stop(grace=30))
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert (await d.wait()).code == -signal.SIGKILL
    assert runc_ids(sandbox) == [] and sandbox.instances == {}


SERVER = """
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80))
    s.listen()
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[1].encode())
        c.close()
"""


def fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        return c.recv(64)


async def test_port_mapping_reaches_only_the_mapped_container(sandbox: RuncSandbox, tmp_path: Path) -> None:
    port = free_port()
    mapped = spec_for(
        tmp_path, "web", container=ContainerSpec(ports=(f"{port}:80/tcp",)), code={"s.py": SERVER}
    )
    hidden = spec_for(tmp_path, "hid", code={"s.py": SERVER})
    a = await sandbox.start(mapped, argv=py("s.py", "mapped"))
    b = await sandbox.start(hidden, argv=py("s.py", "hidden"))
    for inst in (a, b):  # both bind port 80 as uid 65534: low ports work inside the container's netns
        await poll(lambda i=inst: b"listening" in sandbox.release_output(i.container_id, keep=True))
    assert await asyncio.to_thread(fetch, port) == b"mapped"
    # The unmapped container's port 80 is not on the host, and nothing else maps to it.
    with pytest.raises(OSError):
        await asyncio.to_thread(fetch, 80)
    await a.stop(grace=0.2)
    with pytest.raises(OSError):
        await asyncio.to_thread(fetch, port)
    await b.stop(grace=0.2)


async def test_volume_read_write(sandbox: RuncSandbox, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir(mode=0o777)
    vol.chmod(0o777)
    (vol / "in").write_text("from host")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f").write_text("ro")
    prog = """
        import os
        text = open("/data/in").read()
        open("/data/out", "w").write(text + " and back")
        try:
            open("/cfg/g", "w")
        except OSError:
            print("ro refused")
        print(open("/cfg/f").read())
    """
    box = ContainerSpec(volumes=(f"{vol}:/data:rw", f"{ro}:/cfg:ro"))
    inst = await sandbox.start(spec_for(tmp_path, container=box, code={"v.py": prog}), argv=py("v.py"))
    assert (await inst.wait()).code == 0, inst.output
    assert (vol / "out").read_text() == "from host and back"
    assert inst.output.split() == [b"ro", b"refused", b"ro"]


async def test_mapped_device_only(sandbox: RuncSandbox, tmp_path: Path) -> None:
    prog = """
        import os
        print(len(open("/dev/mydev", "rb").read(16)), os.path.exists("/dev/kmsg"), os.path.exists("/dev/loop0"))
    """
    box = ContainerSpec(devices=("/dev/zero:/dev/mydev:r",))
    inst = await sandbox.start(spec_for(tmp_path, container=box, code={"d.py": prog}), argv=py("d.py"))
    assert (await inst.wait()).code == 0, inst.output
    assert inst.output.split() == [b"16", b"False", b"False"]


MOUNT = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
    print("mounted" if rc == 0 else os.strerror(ctypes.get_errno()))
"""


async def test_privileged_can_mount_unprivileged_cannot(sandbox: RuncSandbox, tmp_path: Path) -> None:
    plain = await sandbox.start(spec_for(tmp_path, "p", code={"m.py": MOUNT}), argv=py("m.py"))
    assert (await plain.wait()).code == 0 and plain.output.strip() == b"Operation not permitted", plain.output
    box = ContainerSpec(privileged=True)
    priv = await sandbox.start(spec_for(tmp_path, "q", container=box, code={"m.py": MOUNT}), argv=py("m.py"))
    assert (await priv.wait()).code == 0 and priv.output.strip() == b"mounted", priv.output


async def test_host_network_shares_the_host_stack(sandbox: RuncSandbox, tmp_path: Path) -> None:
    port = free_port()
    prog = SERVER.replace('("0.0.0.0", 80)', f'("127.0.0.1", {port})')
    box = ContainerSpec(host_network=True)
    inst = await sandbox.start(
        spec_for(tmp_path, container=box, code={"s.py": prog}), argv=py("s.py", "hostnet")
    )
    await poll(lambda: b"listening" in sandbox.release_output(inst.container_id, keep=True))
    assert await asyncio.to_thread(fetch, port) == b"hostnet"
    assert inst.container_id not in cni.list_netns(sandbox.prefix)
    await inst.stop(grace=0.2)


async def test_failed_start_leaves_nothing(sandbox: RuncSandbox, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, container=ContainerSpec(ports=(f"{free_port()}:80",)))
    with pytest.raises(Exception, match="runc could not start"):
        await sandbox.start(spec, argv=["/nonexistent/binary"])
    assert runc_ids(sandbox) == [] and sandbox.instances == {}
    assert leftovers(sandbox.prefix, sandbox.net.bridge if sandbox.net else "") == []


OWNER = """
import asyncio, sys
from pathlib import Path
sys.path[:0] = [{repo!r}]
from tests.sandbox.test_runc import make_sandbox, spec_for, SERVER, py
from edgefc.sandbox.base import ContainerSpec

async def main():
    tmp = Path(sys.argv[1])
    box = make_sandbox(tmp, sys.argv[2])
    await box.open()
    for i, ports in enumerate([(sys.argv[3] + ":80",), (), ()]):
        spec = spec_for(tmp, f"k{{i}}", container=ContainerSpec(ports=ports), code={{"s.py": SERVER}})
        await box.start(spec, argv=py("s.py", "x"))
    print("started", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_reconcile_after_owner_sigkill(tmp_path: Path) -> None:
    _require()
    (tmp_path / "data").mkdir()
    gw = "r" + secrets.token_hex(4)
    port = free_port()
    script = tmp_path / "owner.py"
    script.write_text(OWNER.format(repo=str(Path(__file__).parents[2])))
    argv = [sys.executable, str(script), str(tmp_path), gw, str(port)]
    owner = await asyncio.to_thread(subprocess.Popen, argv, stdout=subprocess.PIPE)
    box = make_sandbox(tmp_path, gw)
    try:
        assert owner.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(owner.stdout.readline), 30)
        assert line == b"started\n"
        owner.send_signal(signal.SIGKILL)
        await asyncio.to_thread(owner.wait)
        assert len(runc_ids(box)) == 3
        assert len(leftovers(box.prefix, box.net.bridge if box.net else "")) >= 3
        await box.open()
        assert runc_ids(box) == []
        assert leftovers(box.prefix, box.net.bridge if box.net else "") == []
        assert box.net is not None and box.net.leftover_ids(box.prefix) == set()
        with pytest.raises(OSError):
            await asyncio.to_thread(fetch, port)
        # The reconciled sandbox works normally afterwards.
        inst = await box.start(spec_for(tmp_path, "after"), argv=py("-c", "pass"))
        assert await inst.wait() == ExitStatus(0)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        await box.open()
        await box.close()
        await asyncio.to_thread(drop_bridge, box)


HANDLER = """
    import os
    def handler(event, context):
        leaked = sorted(k for k in os.environ if k.startswith("EDGEFC_WORKER"))
        return {"echo": event.decode(), "uid": os.getuid(), "leaked": leaked, "name": context.function.name}
"""


async def test_worker_in_a_container_serves_the_gateway_socket(sandbox: RuncSandbox, tmp_path: Path) -> None:
    from edgefc.worker.protocol import encode, read_frame

    sock_path = tmp_path / "gw.sock"
    conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await conns.put((reader, writer))

    server = await asyncio.start_unix_server(accept, path=str(sock_path))
    sock_path.chmod(0o666)
    spec = spec_for(tmp_path, code={"index.py": HANDLER})
    spec = InstanceSpec(**{**spec.__dict__, "socket_path": sock_path})
    try:
        inst = await sandbox.start(spec)  # the real worker: python -I -m edgefc.worker
        reader, writer = await asyncio.wait_for(conns.get(), 20)
        hello = await asyncio.wait_for(read_frame(reader), 10)
        assert hello == {"t": "hello", "instance": spec.instance_id, "key": spec.key, "pid": 1}
        function = {"name": "fn-a", "handler": "index.handler", "memory": 64, "timeout": 3}
        writer.write(
            encode({"t": "init", "handler": "index.handler", "initializer": None, "function": function})
        )
        writer.write(encode({"t": "invoke", "id": "r1", "payload": b"ping", "deadline_ms": 3000}))
        await writer.drain()
        frames = []
        while not frames or frames[-1]["t"] not in ("result", "error", "init_error"):
            frames.append(await asyncio.wait_for(read_frame(reader), 10))
        assert [f["t"] for f in frames if f["t"] != "log"] == ["ready", "result"], frames
        assert json.loads(frames[-1]["payload"]) == {
            "echo": "ping",
            "uid": 65534,
            "leaked": [],
            "name": "fn-a",
        }
        writer.write(encode({"t": "stop"}))
        await writer.drain()
        assert await asyncio.wait_for(inst.wait(), 10) == ExitStatus(0)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
