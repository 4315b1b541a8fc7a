"""The function manager: one per deployed function — run mode, instances, concurrency, queue, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgefc.errors import Busy, FunctionError, Unavailable
from edgefc.sandbox.base import ContainerSpec, InstanceSpec, Sandbox
from edgefc.supervisor.hub import WorkerHub
from edgefc.supervisor.instance import InstanceState, Runner
from edgefc.supervisor.policy import RestartPolicy

log = logging.getLogger("edgefc.supervisor")

# Request ids: 32 hex digits like a uuid4's, a random prefix per gateway process and a counter (no syscall per event).
_RID_PREFIX = secrets.token_hex(8)
_rid_counter = itertools.count(1)

OUTCOMES = {"Handled": "error", "Timeout": "timeout", "OutOfMemory": "oom", "Unhandled": "unhandled"}


class FunctionState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    BACKOFF = "backoff"
    FAILED = "failed"


@dataclass(frozen=True)
class FunctionPlan:
    """What a manager runs: the validated settings of one function and where its code is."""

    name: str
    handler: str
    initializer: str | None
    mode: str  # on_demand | continuous
    memory_mb: int
    timeout_s: float
    idle_timeout_s: float
    max_concurrency: int
    max_instances: int
    max_queue: int
    env: dict[str, str]
    config: Any
    code_dir: Path
    code_sha: str
    version: str
    container: ContainerSpec
    fingerprint: str  # equal fingerprints = unchanged function across deployments
    isolation: str = "process"  # process | container: the sandbox that runs it
    runtime: str = "python3"  # python3 | nodejs18 | nodejs20 | nodejs22: which worker the sandbox starts


class Hooks(Protocol):
    """What the gateway does with what managers observe."""

    def log(self, function: str, instance_id: str, frame: dict[str, Any]) -> None: ...

    async def call(self, function: str, op: str, args: dict[str, Any]) -> Any: ...

    def invocation(self, function: str, trigger: str, outcome: str, seconds: float, cold: bool) -> None: ...

    def cold_start(self, function: str, seconds: float) -> None: ...

    def restart(self, function: str, reason: str) -> None: ...

    def instance_event(self, function: str, instance_id: str, event: str) -> None:
        """An instance became ``ready`` or ended (``exit``)."""
        ...


class FunctionManager:
    """Owns the instances of one function and hands them events."""

    def __init__(self, plan: FunctionPlan, *, sandbox: Sandbox, hub: WorkerHub, hooks: Hooks, socket_path: Path) -> None:
        self.plan = plan
        self.name = plan.name
        self.sandbox = sandbox
        self.hub = hub
        self.hooks = hooks
        self.socket_path = socket_path
        self.policy = RestartPolicy()
        self._runners: dict[str, Runner] = {}
        self._fresh: set[str] = set()  # runners whose first event is a cold start
        self._waiters: deque[asyncio.Future[Runner]] = deque()
        self._starting = 0
        self._closed = False
        self._draining = False
        self._backoff = False
        self._failed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._restart_handle: asyncio.TimerHandle | None = None
        self._lifecycle = asyncio.Lock()  # explicit restarts and keep-alive respawns, one at a time
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None
        self.counts = {"invocations": 0, "errors": 0, "timeouts": 0, "cold_starts": 0}

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Continuous: start its instances and wait until they are ready. Raises FunctionError if one fails to start."""
        if self.plan.mode == "continuous":
            await asyncio.gather(*(self._spawn() for _ in range(self.plan.max_instances)))
        else:
            self._idle_task = asyncio.create_task(self._reap_idle(), name=f"idle-{self.name}")

    async def probe(self) -> None:
        """Start one instance to prove the module imports and the initializer runs, then stop it."""
        runner = await self._spawn(count_cold=False)
        await self._stop_runner(runner, reason="probe")

    async def close(self, *, drain: bool = True) -> None:
        """Stop taking events; with ``drain``, let events in flight finish; then stop every instance."""
        self._draining = True
        if drain:
            # Each event ends within its timeout, so a queue that keeps moving is waited for however long it is;
            # only when no event has finished for a whole timeout (plus the kill grace) are the rest refused.
            stall = self.plan.timeout_s + 2
            finished, progress_at = self.counts["invocations"], time.monotonic()
            while self._waiters or any(r.inflight for r in self._runners.values()):
                if self.counts["invocations"] != finished:
                    finished, progress_at = self.counts["invocations"], time.monotonic()
                elif time.monotonic() - progress_at > stall:
                    break
                await asyncio.sleep(0.01)
        self._closed = True
        if self._restart_handle is not None:
            self._restart_handle.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(Unavailable(f"function '{self.name}' is stopping"))
        self._waiters.clear()
        await asyncio.gather(*(self._stop_runner(r, reason="stopped") for r in list(self._runners.values())))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restart(self) -> None:
        """Stop every instance and, for a continuous function, start fresh ones; clears `failed`."""
        async with self._lifecycle:  # two restarts at once must not leave two instances of a continuous function
            self._failed = False
            self._backoff = False
            self.policy.reset()
            if self._restart_handle is not None:
                self._restart_handle.cancel()
            await asyncio.gather(*(self._stop_runner(r, reason="restart") for r in list(self._runners.values())))
            if self.plan.mode == "continuous" and not self._closed:
                await asyncio.gather(*(self._spawn() for _ in range(self.plan.max_instances)), return_exceptions=True)

    # ---- events ----------------------------------------------------------------------------------------------

    async def invoke(self, payload: bytes, *, trigger: dict[str, Any] | None = None, request_id: str | None = None) -> bytes:
        """Run one event on an instance. Raises FunctionError, Busy (queue full) or Unavailable."""
        trigger = trigger or {"type": "invoke"}
        rid = request_id or f"{_RID_PREFIX}{next(_rid_counter):016x}"
        started = time.monotonic()
        try:
            runner = await self._acquire()
        except Busy:
            self.hooks.invocation(self.name, trigger["type"], "busy", 0.0, False)
            raise
        cold = runner.id in self._fresh
        self._fresh.discard(runner.id)
        outcome = "success"
        try:
            return await runner.invoke(rid, payload, trigger, self.plan.timeout_s)
        except FunctionError as exc:
            outcome = OUTCOMES.get(exc.type, "error")
            raise
        finally:
            runner.inflight -= 1
            runner.last_used = time.monotonic()
            self.counts["invocations"] += 1
            if outcome != "success":
                self.counts["errors"] += 1
            if outcome == "timeout":
                self.counts["timeouts"] += 1
            self.hooks.invocation(self.name, trigger["type"], outcome, time.monotonic() - started, cold)
            self._dispatch()

    async def _acquire(self) -> Runner:
        if self._closed or self._draining:
            raise Unavailable(f"function '{self.name}' is being replaced or stopped")
        runner = self._free_runner()
        if runner is not None and not self._waiters:
            runner.inflight += 1
            return runner
        if self._failed:
            raise Unavailable(f"function '{self.name}' has failed (crash loop); redeploy or restart it")
        fut: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._maybe_scale()
        # Events waiting for an instance that is starting do not count against max_queue.
        if len(self._waiters) > self.plan.max_queue + self._starting * self.plan.max_concurrency:
            self._waiters.pop()
            raise Busy(f"function '{self.name}' is busy: {len(self._waiters)} events already wait (max_queue)")
        self._dispatch()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().inflight -= 1
                self._dispatch()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)
            raise

    def _free_runner(self) -> Runner | None:
        best: Runner | None = None
        for r in self._runners.values():
            if r.state is InstanceState.READY and r.inflight < self.plan.max_concurrency:
                if best is None or r.inflight < best.inflight:
                    best = r
        return best

    def _dispatch(self) -> None:
        while self._waiters:
            runner = self._free_runner()
            if runner is None:
                return
            fut = self._waiters.popleft()
            if fut.done():
                continue
            runner.inflight += 1
            fut.set_result(runner)

    def _maybe_scale(self) -> None:
        if self.plan.mode != "on_demand" or self._closed or self._failed:
            return
        ready = [r for r in self._runners.values() if r.state is InstanceState.READY]
        free = sum(self.plan.max_concurrency - r.inflight for r in ready)
        need = len(self._waiters) - free - self._starting * self.plan.max_concurrency
        while need > 0 and len(ready) + self._starting < self.plan.max_instances:
            self._starting += 1  # counted now, so the next event sees this instance coming
            self._background(self._spawn_for_waiters(), f"spawn-{self.name}")
            need -= self.plan.max_concurrency

    async def _spawn_for_waiters(self) -> None:
        try:
            await self._spawn(counted=True)
        except FunctionError as exc:
            if not any(r.state is InstanceState.READY for r in self._runners.values()):
                while self._waiters:
                    fut = self._waiters.popleft()
                    if not fut.done():
                        fut.set_exception(FunctionError("Unhandled", f"the function failed to start: {exc.message}", exc.stack))
        except Exception as exc:  # noqa: BLE001 — waiters must hear about a sandbox failure
            log.exception("starting an instance of %s failed", self.name)
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(Unavailable(f"cannot start an instance of '{self.name}': {exc}"))

    # ---- instances -------------------------------------------------------------------------------------------

    async def _spawn(self, *, count_cold: bool = True, counted: bool = False) -> Runner:
        """Start one instance and wait until its worker is ready. Raises FunctionError(InitError) or SandboxError."""
        if not counted:
            self._starting += 1
        t0 = time.monotonic()
        iid = f"{self.name[:40]}-{secrets.token_hex(4)}"
        key = secrets.token_hex(16)
        streams = self.hub.expect(iid, key)
        plan = self.plan
        try:
            inst = await self.sandbox.start(
                InstanceSpec(
                    instance_id=iid, function=plan.name, code_dir=plan.code_dir,
                    env={**plan.env, "FUNCTION_NAME": plan.name}, memory_mb=plan.memory_mb,
                    socket_path=self.socket_path, key=key, container=plan.container, runtime=plan.runtime,
                )
            )  # fmt: skip
        except BaseException:
            self._starting -= 1
            self.hub.forget(iid)
            raise
        if self._closed:  # closed while this instance was being made: it must not outlive its manager
            self._starting -= 1
            self.hub.forget(iid)
            inst.kill()
            await inst.wait()
            raise Unavailable(f"function '{self.name}' is stopping")
        runner = Runner(inst, on_log=lambda i, f: self.hooks.log(self.name, i, f), on_call=self._call)
        self._runners[iid] = runner
        init = {
            "function": {"name": plan.name, "handler": plan.handler, "memory": plan.memory_mb, "timeout": plan.timeout_s,
                         "version": plan.version, "initializer": plan.initializer},
            "config": plan.config, "max_concurrency": plan.max_concurrency,
        }  # fmt: skip
        self._background(self._serve(runner, streams, init), f"instance-{iid}")
        try:
            await asyncio.wait_for(asyncio.shield(runner.ready), max(15.0, plan.timeout_s))
        except BaseException as exc:
            runner.kill()
            await asyncio.shield(runner.ended)
            if isinstance(exc, TimeoutError):
                raise FunctionError("InitError", "the instance did not become ready in time") from None
            raise
        finally:
            self._starting -= 1
        self.hooks.instance_event(self.name, iid, "ready")
        if count_cold:
            self._fresh.add(iid)
            seconds = time.monotonic() - t0
            self.counts["cold_starts"] += 1
            self.hooks.cold_start(self.name, seconds)
        self._dispatch()
        return runner

    async def _serve(self, runner: Runner, streams: Any, init: dict[str, Any]) -> None:
        await runner.run(streams, init)
        self.hub.forget(runner.id)
        self._runners.pop(runner.id, None)
        self._fresh.discard(runner.id)
        self._on_exit(runner)

    def _on_exit(self, runner: Runner) -> None:
        status = runner.exit
        assert status is not None
        self.hooks.instance_event(self.name, runner.id, "exit")
        if status.oom:
            reason = "oom"
        elif runner.exit_reason in ("timeout", "stopped", "idle", "restart", "probe"):
            reason = runner.exit_reason
        elif runner.ready.done() and runner.ready.exception() is not None and runner.state is not InstanceState.READY:
            reason = "init_error" if status.code >= 0 else "crash"
        else:
            reason = "crash" if status.code < 0 else "exited"
        if reason != "probe":  # the deploy-time start test of an on_demand function is no exit worth showing
            self.last_exit = {"reason": reason, "code": status.code, "at": time.time(), "instance": runner.id}
        requested = reason in ("stopped", "idle", "restart", "probe")
        if not requested:
            self.restarts += 1
            self.hooks.restart(self.name, reason)
            log.warning("instance %s of %s ended: %s (code %s)", runner.id, self.name, reason, status.code)
        if self.plan.mode == "continuous" and not requested and not self._closed and not self._draining:
            self._schedule_restart(time.monotonic() - runner.started_mono)
        elif self._waiters:
            self._maybe_scale()

    def retry_later(self) -> None:
        """A continuous function that could not start (at boot, say): the keep-alive retries it as after a crash."""
        if self.plan.mode == "continuous" and not self._closed and self._restart_handle is None and not self._failed:
            self._schedule_restart(0.0)

    def _schedule_restart(self, uptime: float) -> None:
        decision = self.policy.on_exit(uptime)
        if decision.give_up:
            self._failed = True
            self._backoff = False
            log.error("%s crash-looped %d times: failed until redeployed or restarted", self.name, self.policy.failures)
            for fut in self._waiters:
                if not fut.done():
                    fut.set_exception(Unavailable(f"function '{self.name}' has failed (crash loop)"))
            self._waiters.clear()
            return
        self._backoff = decision.crash_loop
        self._restart_handle = asyncio.get_running_loop().call_later(
            decision.delay, lambda: self._background(self._respawn(), f"respawn-{self.name}")
        )

    async def _respawn(self) -> None:
        self._restart_handle = None
        async with self._lifecycle:
            live = [r for r in self._runners.values() if r.state in (InstanceState.STARTING, InstanceState.READY)]
            if self._closed or self._failed or len(live) >= self.plan.max_instances:
                return  # closed, given up, or an explicit restart already brought it back
            try:
                await self._spawn(count_cold=False)
                # Up again: `running`. The policy keeps its count, so a quick new crash goes straight back to backoff.
                self._backoff = False
            except Exception:  # noqa: BLE001 — the exit of the failed instance schedules the next try
                log.debug("restart of %s failed", self.name, exc_info=True)

    async def _stop_runner(self, runner: Runner, *, reason: str) -> None:
        runner.exit_reason = reason
        await runner.stop()

    async def _reap_idle(self) -> None:
        idle = self.plan.idle_timeout_s
        while True:
            await asyncio.sleep(min(1.0, max(0.05, idle / 4)))
            now = time.monotonic()
            for r in list(self._runners.values()):
                if r.state is InstanceState.READY and r.inflight == 0 and now - r.last_used >= idle:
                    self._background(self._stop_runner(r, reason="idle"), f"idle-stop-{r.id}")

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        return await self.hooks.call(self.name, op, args)

    def _background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- status ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> FunctionState:
        if self._failed:
            return FunctionState.FAILED
        if self._backoff:
            return FunctionState.BACKOFF
        ready = [r for r in self._runners.values() if r.state is InstanceState.READY]
        if not ready:
            return FunctionState.STARTING if self._starting else FunctionState.STOPPED
        if self.plan.mode == "continuous" or any(r.inflight for r in ready):
            return FunctionState.RUNNING
        return FunctionState.IDLE

    def runners(self) -> list[Runner]:
        return list(self._runners.values())

    def runner(self, instance_id: str) -> Runner | None:
        return self._runners.get(instance_id)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.plan.mode,
            "state": self.state.value,
            "isolation": self.plan.isolation,
            "version": self.plan.version,
            "code_sha256": self.plan.code_sha,
            "instances": [r.status() for r in self._runners.values()],
            "queued": len(self._waiters),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            **self.counts,
        }
