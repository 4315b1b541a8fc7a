"""A supervisor rig: a real worker hub, the real process sandbox (fork server, no cgroups) behind a gate that a
test can hold at each await of a start, and an events sink that records what managers report."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from edgefc.config.manifest import Mode
from edgefc.errors import ValidationError
from edgefc.sandbox.base import ContainerSpec, Instance, InstanceSpec, Sandbox
from edgefc.sandbox.process import ProcessSandbox
from edgefc.supervisor.hub import WorkerHub
from edgefc.supervisor.manager import FunctionManager
from edgefc.supervisor.plan import FunctionPlan
from edgefc.tasks import TaskGroup


@dataclass
class Recorder:
    """Implements supervisor.ports.Events and Calls, keeping everything it is told."""

    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    invocations: list[tuple[str, str, str]] = field(default_factory=list)
    restarts: list[tuple[str, str]] = field(default_factory=list)
    instance_events: list[tuple[str, str, str]] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def log(self, function: str, instance_id: str, frame: dict[str, Any]) -> None:
        self.logs.append((function, instance_id, frame))

    def invocation(self, function: str, trigger: str, outcome: str, seconds: float, cold: bool) -> None:
        self.invocations.append((function, trigger, outcome))

    def cold_start(self, function: str, seconds: float) -> None:
        pass

    def restart(self, function: str, reason: str) -> None:
        self.restarts.append((function, reason))

    def instance_event(self, function: str, instance_id: str, event: str) -> None:
        self.instance_events.append((function, instance_id, event))

    async def call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        self.calls.append((function, op, args))
        if op == "echo":
            return args
        raise ValidationError([f"sdk: unknown operation {op!r}"])

    def notes(self) -> list[str]:
        """What the gateway wrote into the function's own log."""
        return [f["message"] for _, _, f in self.logs if f.get("stream") == "gateway"]


class GatedSandbox(Sandbox):
    """The process sandbox, with gates a test can close to hold a start before or after the fork."""

    name = "process"

    def __init__(self, inner: ProcessSandbox) -> None:
        self.inner = inner
        self.before = asyncio.Event()
        self.after = asyncio.Event()
        self.before.set()
        self.after.set()
        self.at_before = asyncio.Event()  # a start reached the first gate
        self.at_after = asyncio.Event()
        self.started: list[Instance] = []

    async def open(self) -> None:
        await self.inner.open()

    async def start(self, spec: InstanceSpec) -> Instance:
        self.at_before.set()
        await self.before.wait()
        inst = await self.inner.start(spec)
        self.started.append(inst)
        self.at_after.set()
        try:
            await self.after.wait()
        except asyncio.CancelledError:  # as a real sandbox must: a start cancelled after the fork kills it
            inst.kill()
            await asyncio.shield(inst.wait())
            raise
        return inst

    async def close(self) -> None:
        await self.inner.close()


def short_dir() -> Path:
    """A temp dir with a short path (Unix socket paths are limited to ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="efc-"))


def write_code(root: Path, source: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    code = root / f"code-{digest}"
    code.mkdir(parents=True, exist_ok=True)
    (code / "index.py").write_text(textwrap.dedent(source))
    return code


def plan(code: Path, name: str = "fn", **settings: Any) -> FunctionPlan:
    values: dict[str, Any] = {
        "name": name, "handler": "index.handler", "initializer": None, "mode": Mode.ON_DEMAND, "memory_mb": 256,
        "timeout_s": 5.0, "idle_timeout_s": 300.0, "max_concurrency": 1, "max_instances": 1, "max_queue": 10,
        "env": {}, "config": None, "code_dir": code, "code_sha": "0" * 64, "version": "1",
        "container": ContainerSpec(), "fingerprint": name, "restart_backoff_max_s": 60.0,
    }  # fmt: skip
    values.update(settings)
    return FunctionPlan(**values)


class Rig:
    """Everything a FunctionManager needs, opened and closed by the ``rig`` fixture."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hub = WorkerHub(root / "w.sock")
        self.tasks = TaskGroup("test")
        self.inner = ProcessSandbox(root / "run", gateway_id="test", use_cgroups=False, tasks=self.tasks.child("sandbox"))
        self.sandbox = GatedSandbox(self.inner)
        self.events = Recorder()
        self.managers: list[FunctionManager] = []

    async def open(self) -> None:
        await self.hub.start()
        await self.sandbox.open()

    async def close(self) -> None:
        for manager in self.managers:
            await manager.close(drain=False)
        await self.sandbox.close()
        await self.hub.close()
        await self.tasks.aclose()

    def manager(self, source: str, **settings: Any) -> FunctionManager:
        manager = FunctionManager(plan(write_code(self.root, source), **settings), sandbox=self.sandbox, hub=self.hub,
                                  events=self.events, calls=self.events, tasks=self.tasks,
                                  socket_path=self.hub.socket_path)  # fmt: skip
        self.managers.append(manager)
        return manager

    def workers(self) -> list[psutil.Process]:
        """The live workers of the fork server (its children that are not zombies)."""
        server = self.inner._server
        assert server is not None
        out = []
        for child in psutil.Process(server.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    out.append(child)
            except psutil.NoSuchProcess:
                pass
        return out

    async def until(self, predicate: Any, what: str, timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; fail with ``what`` (an assert, not a test timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)
