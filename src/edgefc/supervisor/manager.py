"""The function manager: one per deployed function — run mode, instances, concurrency, queue, keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any

from edgefc.errors import Busy, FunctionError, Unavailable
from edgefc.observe.metrics import Outcome
from edgefc.sandbox.base import Sandbox, stop_then_kill
from edgefc.supervisor.exits import REQUESTED, exit_note, exit_reason
from edgefc.supervisor.hub import Streams, WorkerHub
from edgefc.supervisor.instance import InstanceState, Runner
from edgefc.supervisor.plan import FunctionPlan, FunctionState, Mode
from edgefc.supervisor.policy import RestartPolicy
from edgefc.supervisor.ports import Calls, Events
from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.supervisor")

# Request ids: 32 hex digits like a uuid4's, a random prefix per gateway process and a counter (no syscall per event).
_RID_PREFIX = secrets.token_hex(8)
_rid_counter = itertools.count(1)

OUTCOMES = {"Handled": Outcome.ERROR, "Timeout": Outcome.TIMEOUT, "OutOfMemory": Outcome.OOM, "Unhandled": Outcome.UNHANDLED}

__all__ = ["FunctionManager", "FunctionPlan", "FunctionState"]


class FunctionManager:
    """Owns the instances of one function and hands them events."""

    def __init__(self, plan: FunctionPlan, *, sandbox: Sandbox, hub: WorkerHub, events: Events, calls: Calls,
                 tasks: TaskGroup, socket_path: Path, log_lines_per_s: int | None = None) -> None:  # fmt: skip
        self.plan = plan
        self.log_lines_per_s = log_lines_per_s  # the function's log budget, kept by its workers too
        self.name = plan.name
        self.sandbox = sandbox
        self.hub = hub
        self.events = events
        self.calls = calls
        self.socket_path = socket_path
        self.policy = RestartPolicy(cap=plan.restart_backoff_max_s)
        self._tasks = tasks.child(f"function-{plan.name}")
        self._runners: dict[str, Runner] = {}
        self._fresh: set[str] = set()  # runners whose first event is a cold start
        self._waiters: deque[asyncio.Future[Runner]] = deque()
        self._starting = 0
        self._started = False
        self._closed = False
        self._draining = False
        self._crash_loop = False
        self._failed = False
        self._restart_handle: asyncio.TimerHandle | None = None
        self._lifecycle = asyncio.Lock()  # explicit restarts and keep-alive respawns, one at a time
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None
        self.counts = {"invocations": 0, "errors": 0, "timeouts": 0, "cold_starts": 0}

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (continuous: its instances, ready; before this, events only wait). Raises FunctionError."""
        self._started = True
        if self.plan.mode is Mode.CONTINUOUS:
            await asyncio.gather(*(self._spawn() for _ in range(self.plan.max_instances)))
        else:
            self._tasks.service(self._reap_idle, f"idle-{self.name}")
            self._maybe_scale()

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
        self._cancel_restart()
        self._fail_waiters(Unavailable(f"function '{self.name}' is stopping"))
        await asyncio.gather(*(self._stop_runner(r, reason="stopped") for r in list(self._runners.values())))
        await self._tasks.aclose()

    async def restart(self) -> None:
        """Stop every instance and, for a continuous function, start fresh ones; clears `failed` and the backoff."""
        async with self._lifecycle:  # two restarts at once must not leave two instances of a continuous function
            self._failed = False
            self._crash_loop = False
            self.policy.reset()
            self._cancel_restart()
            await asyncio.gather(*(self._stop_runner(r, reason="restart") for r in list(self._runners.values())))
            if self.plan.mode is Mode.CONTINUOUS and not self._closed:
                await asyncio.gather(*(self._spawn() for _ in range(self.plan.max_instances)), return_exceptions=True)

    # ---- events ----------------------------------------------------------------------------------------------

    async def invoke(self, payload: bytes, *, trigger: dict[str, Any] | None = None, request_id: str | None = None) -> bytes:
        """Run one event on an instance. Raises FunctionError, Busy (queue full) or Unavailable."""
        trigger = trigger or {"type": "invoke"}
        rid = request_id or f"{_RID_PREFIX}{next(_rid_counter):016x}"
        started = time.monotonic()
        runner = None if self._waiters or self._closed or self._draining else self._free_runner()
        if runner is not None:  # the warm path: no queue, no extra coroutine
            runner.inflight += 1
        else:
            try:
                runner = await self._acquire()
            except Busy:
                self.events.invocation(self.name, trigger["type"], Outcome.BUSY, 0.0, False)
                raise
        cold = runner.id in self._fresh
        if cold:
            self._fresh.discard(runner.id)
        outcome = Outcome.SUCCESS
        try:
            return await runner.invoke(rid, payload, trigger, self.plan.timeout_s)
        except FunctionError as exc:
            outcome = OUTCOMES.get(exc.type, Outcome.ERROR)
            raise
        finally:
            runner.inflight -= 1
            runner.last_used = time.monotonic()
            counts = self.counts
            counts["invocations"] += 1
            if outcome is not Outcome.SUCCESS:
                counts["errors"] += 1
                if outcome is Outcome.TIMEOUT:
                    counts["timeouts"] += 1
                    t = self.plan.timeout_s
                    self._note("error", f"event {rid} ran past its timeout of {t:g} s and instance {runner.id} was "
                               f"killed: raise timeout_s ({t:g}) or make the handler faster", runner.id, rid)  # fmt: skip
            self.events.invocation(self.name, trigger["type"], outcome, runner.last_used - started, cold)
            if self._waiters:
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
        if self._crash_loop and runner is None:
            # Held events would wait for the backoff (up to restart_backoff_max_s): refuse them now instead.
            raise Unavailable(f"function '{self.name}' is in backoff after {self.policy.failures} quick exits; "
                              "it is restarted automatically (see its log)")  # fmt: skip
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

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(error)

    def _maybe_scale(self) -> None:
        if self.plan.mode is not Mode.ON_DEMAND or self._closed or self._failed or not self._started:
            return
        ready = [r for r in self._runners.values() if r.state is InstanceState.READY]
        free = sum(self.plan.max_concurrency - r.inflight for r in ready)
        need = len(self._waiters) - free - self._starting * self.plan.max_concurrency
        while need > 0 and len(ready) + self._starting < self.plan.max_instances:
            self._starting += 1  # counted now, so the next event sees this instance coming
            self._tasks.spawn(self._spawn_for_waiters(), f"spawn-{self.name}")
            need -= self.plan.max_concurrency

    async def _spawn_for_waiters(self) -> None:
        try:
            await self._spawn(counted=True)
        except FunctionError as exc:
            if not any(r.state is InstanceState.READY for r in self._runners.values()):
                self._fail_waiters(FunctionError("Unhandled", f"the function failed to start: {exc.message}", exc.stack))
        except Exception as exc:  # noqa: BLE001 — waiters must hear about a sandbox failure
            log.exception("starting an instance of %s failed", self.name)
            self._fail_waiters(Unavailable(f"cannot start an instance of '{self.name}': {exc}"))

    # ---- instances -------------------------------------------------------------------------------------------

    async def _spawn(self, *, count_cold: bool = True, counted: bool = False) -> Runner:
        """Start one instance and wait until its worker is ready. Raises FunctionError(InitError) or SandboxError.

        Cancellation-safe: an instance started for a cancelled call is killed and waited for."""
        if not counted:
            self._starting += 1
        t0 = time.monotonic()
        iid = f"{self.name[:40]}-{secrets.token_hex(4)}"
        key = secrets.token_hex(16)
        streams = self.hub.expect(iid, key)
        plan = self.plan
        try:
            inst = await self.sandbox.start(plan.instance_spec(iid, key, self.socket_path))
        except BaseException:
            self._starting -= 1
            self.hub.forget(iid)
            raise
        if self._closed:  # closed while this instance was being made: it must not outlive its manager
            self._starting -= 1
            self.hub.forget(iid)
            inst.kill()
            await asyncio.shield(inst.wait())
            raise Unavailable(f"function '{self.name}' is stopping")
        runner = Runner(inst, on_log=lambda i, f: self.events.log(self.name, i, f), on_call=self._call, tasks=self._tasks)
        self._runners[iid] = runner
        init = plan.init_frame()
        if self.log_lines_per_s:
            init["log_lines_per_s"] = self.log_lines_per_s
        self._tasks.spawn(self._serve(runner, streams, init), f"instance-{iid}")
        try:
            await asyncio.wait_for(asyncio.shield(runner.ready), max(15.0, plan.timeout_s))
        except BaseException as exc:
            # A worker that reported init_error exits by itself (its exit code tells): give it a moment first.
            grace = 2.0 if isinstance(exc, FunctionError) else 0.0
            if isinstance(exc, asyncio.CancelledError):
                runner.exit_reason = "stopped"  # asked for: no keep-alive restart of a start that was called off
            with contextlib.suppress(BaseException):  # shielded: a cancelled start still waits for the kill
                await stop_then_kill(lambda: None, runner.kill, runner.ended, grace)
            if isinstance(exc, TimeoutError):
                raise FunctionError("InitError", "the instance did not become ready in time") from None
            raise
        finally:
            self._starting -= 1
        self.events.instance_event(self.name, iid, "ready")
        if count_cold:
            self._fresh.add(iid)
            self.counts["cold_starts"] += 1
            self.events.cold_start(self.name, time.monotonic() - t0)
        self._dispatch()
        return runner

    async def _serve(self, runner: Runner, streams: asyncio.Future[Streams], init: dict[str, Any]) -> None:
        await runner.run(streams, init)
        self.hub.forget(runner.id)
        self._runners.pop(runner.id, None)
        self._fresh.discard(runner.id)
        self._on_exit(runner)

    def _on_exit(self, runner: Runner) -> None:
        status = runner.exit
        assert status is not None
        self.events.instance_event(self.name, runner.id, "exit")
        reason = exit_reason(runner, status)
        if reason != "probe":  # the deploy-time start test of an on_demand function is no exit worth showing
            self.last_exit = {"reason": reason, "code": status.code, "at": time.time(), "instance": runner.id}
        if reason not in REQUESTED:
            self.restarts += 1
            self.events.restart(self.name, reason)
            log.warning("instance %s of %s ended: %s (code %s)", runner.id, self.name, reason, status.code)
            note = exit_note(reason, runner.id, status, self.plan.memory_mb, runner.body_error)
            if note:
                self._note("error", note, runner.id)
        if self.plan.mode is Mode.CONTINUOUS and reason not in REQUESTED and not self._closed and not self._draining:
            self._schedule_restart(time.monotonic() - runner.started_mono)
        elif self._waiters:
            self._maybe_scale()

    def retry_later(self) -> None:
        """A continuous function that could not start (at boot, say): the keep-alive retries it as after a crash."""
        if self.plan.mode is Mode.CONTINUOUS and not self._closed and self._restart_handle is None and not self._failed:
            self._schedule_restart(0.0)

    def _schedule_restart(self, uptime: float) -> None:
        decision = self.policy.on_exit(uptime)
        if decision.give_up:
            self._failed = True
            self._crash_loop = False
            self._note("error", f"crash-looped {self.policy.failures} times: failed until redeployed or restarted")
            self._fail_waiters(Unavailable(f"function '{self.name}' has failed (crash loop)"))
            return
        self._crash_loop = decision.crash_loop
        if decision.crash_loop:
            self._fail_waiters(Unavailable(f"function '{self.name}' is in backoff after {self.policy.failures} quick exits"))
        self._note("warning" if decision.delay else "info",
                   f"restarting in {decision.delay:.2f} s (restart {self.restarts}, "
                   f"{self.policy.failures} quick exit(s) in a row; waits grow up to {self.plan.restart_backoff_max_s:g} s)")  # fmt: skip
        self._cancel_restart()
        self._restart_handle = asyncio.get_running_loop().call_later(
            decision.delay, lambda: self._tasks.spawn(self._respawn(), f"respawn-{self.name}") if not self._closed else None
        )

    def _cancel_restart(self) -> None:
        handle, self._restart_handle = self._restart_handle, None
        if handle is not None:
            handle.cancel()

    async def _respawn(self) -> None:
        self._restart_handle = None
        async with self._lifecycle:
            live = [r for r in self._runners.values() if r.state in (InstanceState.STARTING, InstanceState.READY)]
            if self._closed or self._failed or len(live) >= self.plan.max_instances:
                return  # closed, given up, or an explicit restart already brought it back
            try:
                await self._spawn(count_cold=False)
                # Up again: `running`. The policy keeps its count, so a quick new crash waits longer.
                self._crash_loop = False
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
                    self._tasks.spawn(self._stop_runner(r, reason="idle"), f"idle-stop-{r.id}")

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        return await self.calls.call(self.name, op, args)

    def _note(self, level: str, message: str, instance_id: str = "", request_id: str = "") -> None:
        """A line about this function in its own log (and so in ``edgefc logs NAME``), from the gateway."""
        self.events.log(self.name, instance_id, {"level": level, "stream": "gateway", "message": message,
                                                 "request_id": request_id, "time": time.time()})  # fmt: skip

    # ---- status ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> FunctionState:
        if self._failed:
            return FunctionState.FAILED
        ready = [r for r in self._runners.values() if r.state is InstanceState.READY]
        if not ready:
            if self._restart_handle is not None or self._crash_loop:
                return FunctionState.BACKOFF  # waiting for (or making) the next restart after an exit
            return FunctionState.STARTING if self._starting else FunctionState.STOPPED
        if self.plan.mode is Mode.CONTINUOUS or any(r.inflight for r in ready):
            return FunctionState.RUNNING
        return FunctionState.IDLE

    def runners(self) -> list[Runner]:
        return list(self._runners.values())

    def ready_runner(self) -> Runner | None:
        """A ready instance, if there is one."""
        return next((r for r in self._runners.values() if r.state is InstanceState.READY), None)

    def status(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "name": self.name, "mode": plan.mode.value, "state": self.state.value, "isolation": plan.isolation,
            "version": plan.version, "code_sha256": plan.code_sha, "instances": [r.status() for r in self._runners.values()],
            "queued": len(self._waiters), "restarts": self.restarts, "last_exit": self.last_exit, **self.counts,
        }  # fmt: skip
