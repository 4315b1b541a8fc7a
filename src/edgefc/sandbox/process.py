"""The process sandbox: instances are forks of a fork server, each in its own process group and memory cgroup.

Where no cgroup can be made (not root, no memory controller), an RSS watchdog samples every 100 ms and kills
an instance at its limit; either way the end is reported as out of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import psutil

from edgefc.errors import SandboxError
from edgefc.sandbox.base import ExitStatus, Instance, InstanceSpec, Sandbox
from edgefc.sandbox.cgroups import CgroupTree, MemoryCgroup
from edgefc.worker.protocol import encode, read_frame

log = logging.getLogger("edgefc.sandbox")

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}


class ProcessInstance(Instance):
    """One forked worker."""

    def __init__(self, spec: InstanceSpec, pid: int, cgroup: MemoryCgroup | None, pidfile: Path) -> None:
        self.spec = spec
        self._pid = pid
        self._cgroup = cgroup
        self._pidfile = pidfile
        self._status: int | None = None
        self._exited = asyncio.get_running_loop().create_future()
        self._final: ExitStatus | None = None
        self._watchdog_oom = False
        self._limit = spec.memory_mb * 1024 * 1024
        self._watchdog: asyncio.Task[None] | None = None
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._proc = None
        if cgroup is None:
            self._watchdog = asyncio.create_task(self._watch_rss(), name=f"rss-watchdog-{spec.instance_id}")

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._status

    def _exit(self, status: int) -> None:
        self._status = status
        if not self._exited.done():
            self._exited.set_result(status)

    async def wait(self) -> ExitStatus:
        status = await asyncio.shield(self._exited)
        if self._final is None:
            oom = self._watchdog_oom
            if self._cgroup is not None:
                oom = oom or self._cgroup.oom_kills() > 0 or (status == -signal.SIGKILL and self._cgroup.hit_limit())
                await asyncio.to_thread(self._cgroup.destroy)
            if self._watchdog is not None:
                self._watchdog.cancel()
            with contextlib.suppress(OSError):
                self._pidfile.unlink()
            self._final = ExitStatus(status, oom=oom)
        return self._final

    def kill(self) -> None:
        if self._status is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)

    async def stop(self, grace: float = 2.0) -> ExitStatus:
        if self._status is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), grace)
            except TimeoutError:
                self.kill()
        return await self.wait()

    def memory_bytes(self) -> int | None:
        if self._cgroup is not None and self._status is None:
            value = self._cgroup.memory_bytes()
            if value is not None:
                return value
        return self._tree_rss()

    def cpu_seconds(self) -> float | None:
        if self._proc is None or self._status is not None:
            return None
        try:
            total = 0.0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except psutil.Error:
            return None

    def _tree_rss(self) -> int | None:
        if self._proc is None or self._status is not None:
            return None
        try:
            return sum(p.memory_info().rss for p in [self._proc, *self._proc.children(recursive=True)])
        except psutil.Error:
            return None

    async def _watch_rss(self) -> None:
        while self._status is None:
            rss = self._tree_rss()
            if rss is not None and rss > self._limit:
                self._watchdog_oom = True
                self.kill()
                return
            await asyncio.sleep(0.1)


class ProcessSandbox(Sandbox):
    """Starts instances as forks of one fork server process."""

    name = "process"

    def __init__(self, run_dir: Path, *, gateway_id: str, use_cgroups: bool | None = None) -> None:
        self.run_dir = run_dir
        self.pid_dir = run_dir / "pids"
        self.gateway_id = gateway_id
        if use_cgroups is None:
            use_cgroups = os.geteuid() == 0 and CgroupTree.usable()[0]
        self.cgroups = CgroupTree(gateway_id) if use_cgroups else None
        self._server: asyncio.subprocess.Process | None = None
        self._ctrl: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._instances: dict[int, ProcessInstance] = {}
        self._early_exits: dict[int, int] = {}
        self._next_req = 0

    @property
    def memory_enforcement(self) -> str:
        return f"cgroup {self.cgroups.version.value}" if self.cgroups else "rss watchdog"

    async def open(self) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._reconcile)
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.open)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "edgefc.sandbox.forkserver", str(theirs.fileno()),
            pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._reader_task = asyncio.create_task(self._read(reader), name="forkserver-reader")
        log.info("process sandbox ready (fork server pid %s, memory limits by %s)", self._server.pid, self.memory_enforcement)

    def _reconcile(self) -> None:
        """Kill the workers an earlier run of this gateway left behind (it may have been SIGKILLed)."""
        if self.cgroups is not None:
            left = self.cgroups.reconcile()
            if left:
                log.warning("removed %d instance cgroup(s) left by an earlier run", len(left))
        for pidfile in self.pid_dir.glob("*.pid"):
            try:
                pid_text, start_text = pidfile.read_text().split()
                proc = psutil.Process(int(pid_text))
                if abs(proc.create_time() - float(start_text)) < 1.0:
                    os.killpg(proc.pid, signal.SIGKILL)
                    log.warning("killed worker pid %s left by an earlier run", proc.pid)
            except (ValueError, OSError, psutil.Error):
                pass
            pidfile.unlink(missing_ok=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frame = await read_frame(reader)
                t = frame["t"]
                if t == "spawned":
                    fut = self._pending.pop(frame["req"], None)
                    if fut and not fut.done():
                        fut.set_result(frame["pid"])
                elif t == "spawn_error":
                    fut = self._pending.pop(frame["req"], None)
                    if fut and not fut.done():
                        fut.set_exception(SandboxError(f"fork failed: {frame['message']}"))
                elif t == "exit":
                    inst = self._instances.pop(frame["pid"], None)
                    if inst is not None:
                        inst._exit(frame["status"])
                    else:  # exited before start() registered it
                        self._early_exits[frame["pid"]] = frame["status"]
        except (EOFError, OSError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(SandboxError("the fork server is gone"))
            for inst in list(self._instances.values()):
                inst._exit(-signal.SIGKILL)
            self._instances.clear()

    async def start(self, spec: InstanceSpec) -> Instance:
        if self._writer is None or self._reader_task is None or self._reader_task.done():
            raise SandboxError("the process sandbox is not open (fork server not running)")
        cgroup = None
        if self.cgroups is not None:
            cgroup = self.cgroups.create(spec.instance_id, spec.memory_mb * 1024 * 1024, cpu=spec.container.cpu)
        self._next_req += 1
        req = self._next_req
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        request: dict[str, Any] = {
            "t": "spawn", "req": req, "instance": spec.instance_id, "key": spec.key,
            "socket": str(spec.socket_path), "code_dir": str(spec.code_dir),
            "env": {**BASE_ENV, **spec.env},
            "cgroup_procs": str(cgroup.procs_file) if cgroup else None,
            "cgroup_procs_extra": [str(p) for p in cgroup.extra_procs_files] if cgroup else [],
        }  # fmt: skip
        self._writer.write(encode(request))
        try:
            pid = await fut
        except BaseException:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.destroy)
            raise
        pidfile = self.pid_dir / f"{spec.instance_id}.pid"
        try:
            create_time = psutil.Process(pid).create_time()
            pidfile.write_text(f"{pid} {create_time}")
        except (psutil.Error, OSError):  # a full disk must not fail a cold start: the cgroup finds leftovers too
            pass
        inst = ProcessInstance(spec, pid, cgroup, pidfile)
        if pid in self._early_exits:
            inst._exit(self._early_exits.pop(pid))
        else:
            self._instances[pid] = inst
        return inst

    async def close(self) -> None:
        instances = list(self._instances.values())
        for inst in instances:
            inst.kill()
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait(), 5)
            except TimeoutError:
                self._server.kill()
                await self._server.wait()
        if self._reader_task is not None:
            await self._reader_task
        for inst in instances:
            await inst.wait()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.close)
