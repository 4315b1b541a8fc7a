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

from edgefc import node as nodejs
from edgefc.errors import SandboxError
from edgefc.sandbox.base import ExitStatus, Instance, InstanceSpec, Sandbox, stop_then_kill
from edgefc.sandbox.cgroups import CgroupTree, MemoryCgroup
from edgefc.sandbox.confine import UNCONFINED_ENV
from edgefc.tasks import TaskGroup
from edgefc.worker.protocol import encode, read_frame

log = logging.getLogger("edgefc.sandbox")

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}


def _forkserver_env() -> dict[str, str]:
    """The fork server's own environment: the gateway's would stay readable in every worker's
    ``/proc/self/environ`` (a fork keeps the environment block), so only what the server itself reads goes."""
    env = {**BASE_ENV, **{k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")}}
    if UNCONFINED_ENV in os.environ:
        env[UNCONFINED_ENV] = os.environ[UNCONFINED_ENV]
    return env


def _signal_worker(pid: int, signum: int) -> None:
    """Signal a worker's whole process group; a worker so new that it has not made its group yet (it calls
    setsid first thing after the fork) is signalled itself. It is the fork server's unreaped child, so the pid is
    still its own."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    except PermissionError:
        pass


class ProcessInstance(Instance):
    """One forked worker."""

    def __init__(self, spec: InstanceSpec, pid: int, cgroup: MemoryCgroup | None, pidfile: Path, tasks: TaskGroup) -> None:
        self.spec = spec
        self._pid = pid
        self._cgroup = cgroup
        self._pidfile = pidfile
        self._status: int | None = None
        self._exited = asyncio.get_running_loop().create_future()
        self._watchdog_oom = False
        self._limit = spec.memory_mb * 1024 * 1024
        self._watchdog: asyncio.Task[None] | None = None
        self._cleanup: asyncio.Future[ExitStatus] | None = None
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._proc = None
        if cgroup is None:
            self._watchdog = tasks.spawn(self._watch_rss(), f"rss-watchdog-{spec.instance_id}")

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
        """Wait for the exit and the cleanup (cgroup, pid file); a cancelled caller does not cancel the cleanup."""
        if self._cleanup is None:
            self._cleanup = asyncio.ensure_future(self._release())
        return await asyncio.shield(self._cleanup)

    async def _release(self) -> ExitStatus:
        status = await self._exited
        oom = self._watchdog_oom
        if self._cgroup is not None:
            oom = oom or self._cgroup.oom_kills() > 0 or (status == -signal.SIGKILL and self._cgroup.hit_limit())
            await asyncio.to_thread(self._cgroup.destroy)
        if self._watchdog is not None:
            self._watchdog.cancel()
        with contextlib.suppress(OSError):
            self._pidfile.unlink()
        return ExitStatus(status, oom=oom)

    def kill(self) -> None:
        if self._status is None:
            _signal_worker(self._pid, signal.SIGKILL)

    def _terminate(self) -> None:
        if self._status is None:
            _signal_worker(self._pid, signal.SIGTERM)

    async def stop(self, grace: float = 2.0) -> ExitStatus:
        """SIGTERM, ``grace`` seconds, SIGKILL; returns after cleanup. A cancelled stop still kills."""
        return await stop_then_kill(self._terminate, self.kill, self.wait(), grace)

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

    def __init__(self, run_dir: Path, *, gateway_id: str, use_cgroups: bool | None = None,
                 tasks: TaskGroup | None = None) -> None:  # fmt: skip
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
        # Without a group from the gateway the sandbox is its own root (tests, tools); with one, a fork server
        # that dies under a running gateway fails the gateway loudly instead of leaving it unable to start anything.
        self._tasks = tasks if tasks is not None else TaskGroup("process-sandbox")
        self._closing = False
        self._pending: dict[int, asyncio.Future[int]] = {}
        # Spawn requests whose start() was cancelled: the worker they fork is killed as soon as its pid is known.
        self._abandoned: dict[int, MemoryCgroup | None] = {}
        self._orphans: dict[int, MemoryCgroup | None] = {}
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
            env=_forkserver_env(),
        )  # fmt: skip
        theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._reader_task = self._tasks.spawn(self._read(reader), "forkserver-reader")
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
                    if frame["req"] in self._abandoned:
                        self._orphan(frame["pid"], self._abandoned.pop(frame["req"]))
                    elif fut and not fut.done():
                        fut.set_result(frame["pid"])
                elif t == "spawn_error":
                    fut = self._pending.pop(frame["req"], None)
                    cgroup = self._abandoned.pop(frame["req"], None)
                    if cgroup is not None:
                        self._tasks.spawn(asyncio.to_thread(cgroup.destroy), f"cgroup-destroy-{frame['req']}")
                    if fut and not fut.done():
                        fut.set_exception(SandboxError(f"fork failed: {frame['message']}"))
                elif t == "exit":
                    pid = frame["pid"]
                    inst = self._instances.pop(pid, None)
                    if inst is not None:
                        inst._exit(frame["status"])
                    elif pid in self._orphans:
                        cgroup = self._orphans.pop(pid)
                        if cgroup is not None:
                            self._tasks.spawn(asyncio.to_thread(cgroup.destroy), f"cgroup-destroy-{pid}")
                    else:  # exited before start() registered it
                        self._early_exits[pid] = frame["status"]
        except (EOFError, OSError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(SandboxError("the fork server is gone"))
            for inst in list(self._instances.values()):
                inst._exit(-signal.SIGKILL)
            self._instances.clear()
            if not self._closing:
                self._tasks.fail(SandboxError("the fork server of the process sandbox died"))

    def _orphan(self, pid: int, cgroup: MemoryCgroup | None) -> None:
        """A worker whose start() was cancelled: kill it; its exit report releases its cgroup."""
        _signal_worker(pid, signal.SIGKILL)
        if pid in self._early_exits:
            del self._early_exits[pid]
            if cgroup is not None:
                self._tasks.spawn(asyncio.to_thread(cgroup.destroy), f"cgroup-destroy-{pid}")
        else:
            self._orphans[pid] = cgroup

    async def start(self, spec: InstanceSpec) -> Instance:
        """Fork one worker. Raises SandboxError. Cancellation-safe: a worker forked for a cancelled start is killed."""
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
            "t": "spawn", "req": req, "instance": spec.instance_id,
            "socket": str(spec.socket_path), "code_dir": str(spec.code_dir),
            "cgroup_procs": str(cgroup.procs_file) if cgroup else None,
            "cgroup_procs_extra": [str(p) for p in cgroup.extra_procs_files] if cgroup else [],
        }  # fmt: skip
        # The environment and the worker key follow as a part of their own, which the fork server zeroes once
        # it has forked (forkserver._recv_secret): no later worker finds them in its memory.
        secret: dict[str, Any] = {"env": {**BASE_ENV, **spec.env}, "key": spec.key}
        if nodejs.is_node(spec.runtime):
            # The fork server's child sets the instance up as for Python, then execs the Node.js worker.
            try:
                request["exec"] = nodejs.worker_argv(spec.memory_mb)
                secret["env"] = nodejs.worker_env(secret["env"])
            except FileNotFoundError as exc:
                if cgroup is not None:
                    await asyncio.to_thread(cgroup.destroy)
                raise SandboxError(str(exc)) from None
        self._writer.write(encode(request) + encode(secret))
        try:
            pid = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._orphan(fut.result(), cgroup)  # forked just as we were cancelled
            else:
                self._pending.pop(req, None)
                self._abandoned[req] = cgroup  # the reader kills it when its pid comes
            raise
        except BaseException:
            if cgroup is not None:
                await asyncio.shield(asyncio.to_thread(cgroup.destroy))
            raise
        pidfile = self.pid_dir / f"{spec.instance_id}.pid"
        try:
            create_time = psutil.Process(pid).create_time()
            pidfile.write_text(f"{pid} {create_time}")
        except (psutil.Error, OSError):  # a full disk must not fail a cold start: the cgroup finds leftovers too
            pass
        inst = ProcessInstance(spec, pid, cgroup, pidfile, self._tasks)
        if pid in self._early_exits:
            inst._exit(self._early_exits.pop(pid))
        else:
            self._instances[pid] = inst
        return inst

    async def close(self) -> None:
        """Kill every instance, stop the fork server, release the cgroups. The waits are shielded: a cancelled
        close still leaves nothing running."""
        self._closing = True
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        instances = list(self._instances.values())
        for inst in instances:
            inst.kill()
        for pid in self._orphans:
            _signal_worker(pid, signal.SIGKILL)
        writer, server = self._writer, self._server
        if server is not None:
            # The fork server stops when its control socket closes (it ignores SIGTERM); SIGKILL after 5 s.
            def kill() -> None:
                with contextlib.suppress(ProcessLookupError):
                    server.kill()

            await stop_then_kill(writer.close if writer is not None else lambda: None, kill, server.wait(), 5.0)
        elif writer is not None:
            writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)
        for inst in instances:
            await inst.wait()
        for cgroup in [*self._orphans.values(), *self._abandoned.values()]:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.destroy)
        self._orphans.clear()
        self._abandoned.clear()
        await self._tasks.wait()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.close)
