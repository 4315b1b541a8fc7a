"""What an instance is, whatever isolates it: the interface the supervisor programs against.

A sandbox starts an *instance*: one worker process (``python -m edgefc.worker`` or a fork of the fork server)
that connects back to the gateway's worker socket, identifies itself with ``instance_id`` and ``key``, and
then speaks the protocol of :mod:`edgefc.worker.protocol`. The sandbox only starts, watches and kills it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# After a kill, how long a cancelled stop still waits for the end before it lets the cancellation through.
_KILLED_WAIT_S = 5.0


async def stop_then_kill(terminate: Callable[[], None], kill: Callable[[], None], ended: Awaitable[T], grace: float) -> T:
    """The one stop sequence of edgefc: ``terminate()`` (SIGTERM, a stop frame), up to ``grace`` seconds for
    ``ended``, then ``kill()`` (SIGKILL) and wait for ``ended``.

    Cancellation-safe (anyio's ``Process.aclose``): a cancelled caller still kills, and waits (shielded, bounded)
    for the end before the cancellation goes on, so no instance outlives the stop that was asked of it.
    Raises whatever ``ended`` raises, and CancelledError when cancelled.
    """
    fut = asyncio.ensure_future(ended)
    try:
        terminate()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), grace)
        except TimeoutError:
            kill()
            return await asyncio.shield(fut)
    except asyncio.CancelledError:
        kill()
        with contextlib.suppress(BaseException):  # a second cancel must not stop the kill from being waited on
            await asyncio.wait_for(asyncio.shield(fut), _KILLED_WAIT_S)
        raise


@dataclass(frozen=True)
class ExitStatus:
    """How an instance ended: ``code`` is the exit code, or minus the signal number."""

    code: int
    oom: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """The ``container`` section of a function (CONTRACT §2), already validated."""

    host_network: bool = False
    ports: tuple[str, ...] = ()  # "8080:80/tcp"
    privileged: bool = False
    devices: tuple[str, ...] = ()  # "/dev/ttyUSB0:/dev/ttyS0:rwm"
    volumes: tuple[str, ...] = ()  # "/var/lib/app:/data:ro"
    cpu: float | None = None  # CPU quota in cores (0.5 = half a core); None: no quota


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a sandbox needs to start one instance of a function."""

    instance_id: str  # unique per gateway data dir, safe as a file name: [a-z0-9-]
    function: str
    code_dir: Path  # the extracted bundle; mounted/read-only for the instance
    env: dict[str, str]  # the manifest's env plus FUNCTION_NAME; nothing else reaches user code
    memory_mb: int
    socket_path: Path  # the gateway's worker socket, where the worker connects back
    key: str  # the secret the worker presents in its hello frame
    container: ContainerSpec = field(default_factory=ContainerSpec)
    runtime: str = "python3"  # the manifest's runtime: nodejs* starts the Node.js worker (edgefc.node)


class Instance(abc.ABC):
    """A started worker. Methods never raise for an instance that already ended."""

    spec: InstanceSpec

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The worker's pid as seen from the host, once known."""

    @property
    @abc.abstractmethod
    def returncode(self) -> int | None:
        """None while running; the exit code, or minus the signal number, once ended."""

    @abc.abstractmethod
    async def wait(self) -> ExitStatus:
        """Wait until the instance has ended and everything it used is released."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL the whole instance (its process group / container) now."""

    @abc.abstractmethod
    async def stop(self, grace: float = 2.0) -> ExitStatus:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns once it has ended and been cleaned up."""

    @abc.abstractmethod
    def memory_bytes(self) -> int | None:
        """Current memory use (cgroup figure where there is one, else RSS of the process tree)."""

    @abc.abstractmethod
    def cpu_seconds(self) -> float | None:
        """CPU time used so far (user + system) by the instance."""


class Sandbox(abc.ABC):
    """A way of running instances: ``process`` (fork server) or ``container`` (runc)."""

    name: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Prepare (start the fork server, reconcile leftovers of an earlier run). Raises SandboxError."""

    @abc.abstractmethod
    async def start(self, spec: InstanceSpec) -> Instance:
        """Start one instance; returns once the process exists (not once the worker said hello)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill every instance still running and release what the sandbox holds."""
