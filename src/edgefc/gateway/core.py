"""The gateway: one object that owns every component, started and stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edgefc.config.gateway import GatewayConfig, ensure_secret
from edgefc.config.manifest import Manifest
from edgefc.errors import Conflict, EdgefcError, FunctionError, NotFound, ValidationError
from edgefc.gateway.deploy import Deployer, Limits, Prepared
from edgefc.gateway.messaging import Messaging
from edgefc.gateway.placement import Placement
from edgefc.gateway.store import StateStore
from edgefc.observe.entry import LogEntry
from edgefc.observe.figures import InstanceFigures
from edgefc.observe.gatewaylog import GatewayLogHandler
from edgefc.observe.housekeeping import Housekeeper
from edgefc.observe.logs import LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker
from edgefc.observe.stats import StatsCollector
from edgefc.package import BundleStore
from edgefc.supervisor.hub import WorkerHub
from edgefc.supervisor.manager import FunctionManager, FunctionPlan

log = logging.getLogger("edgefc.gateway")


def _socket_path(run_dir: Path) -> Path:
    """The worker socket; Unix socket paths are limited to ~107 bytes, so long data dirs use /tmp."""
    path = run_dir / "worker.sock"
    if len(str(path)) <= 100:
        return path
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"edgefc-{digest}" / "worker.sock"


class Gateway:
    """Owns the store, sandboxes, worker hub, function managers and observability of one data dir."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        self.run_dir = self.data_dir / "run"
        self.token = ""
        self.gateway_id = ""
        self.started_at = time.time()
        self.placement: Placement | None = None
        self.store: StateStore | None = None
        self.hub: WorkerHub | None = None
        self.logs: LogStore | None = None
        self.metrics = Metrics()
        self.perf = PerfTracker()
        self.stats: StatsCollector | None = None
        self.messaging: Messaging | None = None
        self.deployer: Deployer | None = None
        self.devices: Any = None  # edgefc.devices.service.DeviceService once started
        self.housekeeper: Housekeeper | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # SDK operations served by other components, by prefix ("device.register" → call_handlers["device"]).
        self.call_handlers: dict[str, Callable[[str, str, dict[str, Any]], Awaitable[Any]]] = {}
        # Told when an instance becomes ready or ends: (function, instance id, "ready" | "exit").
        self.instance_listeners: list[Callable[[str, str, str], None]] = []
        self._log_handler: logging.Handler | None = None
        self.ready = asyncio.Event()

    # ---- life cycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open everything and re-apply the last applied deployment (no network needed). Raises EdgefcError."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self.token = self._ensure_secret("admin.token", 32)
        self.gateway_id = self._ensure_secret("gateway.id", 4)
        self.run_dir.mkdir(exist_ok=True)
        self.store = await asyncio.to_thread(StateStore, self.data_dir / "state.db")
        lc = self.config.logs
        self.logs = LogStore(
            self.data_dir / "logs.db", max_bytes_per_function=lc.max_bytes_per_function, max_age_s=lc.max_age_s,
            rate_limit_lines_per_s=lc.rate_limit_lines_per_s, max_line_bytes=lc.max_line_bytes,
        )  # fmt: skip
        await self.logs.start()
        self._log_handler = GatewayLogHandler(self.logs)
        logging.getLogger("edgefc").addHandler(self._log_handler)
        self.hub = WorkerHub(_socket_path(self.run_dir))
        await self.hub.start()
        self.placement = Placement(self.config.isolation.value, self.run_dir, self.data_dir, self.gateway_id)
        await self.placement.open()
        placement = self.placement
        limits = Limits(self.config.limits.max_bundle_bytes, self.config.limits.max_bundle_files)
        self.messaging = Messaging(
            self.config, self.data_dir, self.gateway_id, self.metrics,
            invoke=lambda n, p, t: self.invoke(n, p, trigger=t), invoke_async=self.invoke_async,
        )  # fmt: skip
        await self.messaging.start()
        self.deployer = Deployer(
            BundleStore(self.data_dir), limits, make_manager=self._make_manager, resolve_isolation=placement.resolve,
            extra_checks=lambda m: self._host_problems(m) + self.messaging.check(m),  # type: ignore[union-attr]
        )
        self.deployer.on_applied.append(lambda prepared: self.messaging.apply(prepared.manifest))  # type: ignore[union-attr]
        from edgefc.devices.service import DeviceService

        self.devices = DeviceService(self)
        self.stats = StatsCollector(self._sample, self.data_dir, metrics=self.metrics)
        await self.stats.start()
        self.deployer.on_applied.append(lambda _: self.stats.sample_now())  # type: ignore[union-attr]  # fresh figures
        await self._restore()
        deployer = self.deployer
        self.housekeeper = Housekeeper(
            self.config.housekeeping, state_db=self.data_dir / "state.db", history=self.store, bundles=deployer.bundles,
            lock=deployer.lock, running_bundles=lambda: {m.plan.code_sha for m in deployer.managers.values()},
        )  # fmt: skip
        self._background(self.housekeeper.run(), "housekeeping")  # prunes invocations and bundles (docs/security.md)
        self.ready.set()

    async def close(self) -> None:
        """Stop every instance and component; nothing is left running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.devices is not None:
            self.devices.close()
        if self.stats is not None:
            with contextlib.suppress(Exception):
                await self.stats.close()
        if self.messaging is not None:
            await self.messaging.close()
        if self.deployer is not None:
            await self.deployer.close()
        if self.placement is not None:
            await self.placement.close()
        if self.hub is not None:
            await self.hub.close()
        if self._log_handler is not None:
            logging.getLogger("edgefc").removeHandler(self._log_handler)
        if self.logs is not None:
            await self.logs.close()
        if self.store is not None:
            self.store.close()

    def _ensure_secret(self, name: str, nbytes: int) -> str:
        return ensure_secret(self.data_dir / name, nbytes)  # atomic; refuses an empty or short one

    def _host_problems(self, manifest: Manifest) -> list[str]:
        assert self.placement is not None
        managers = self.deployer.managers if self.deployer else {}
        return self.placement.host_problems(manifest, (m.plan for m in managers.values()))

    def _make_manager(self, plan: FunctionPlan) -> FunctionManager:
        assert self.hub is not None and self.placement is not None
        return FunctionManager(plan, sandbox=self.placement.sandboxes[plan.isolation], hub=self.hub, hooks=self,
                               socket_path=self.hub.socket_path)  # fmt: skip

    async def _restore(self) -> None:
        assert self.store is not None and self.deployer is not None
        current = await asyncio.to_thread(self.store.current)
        if current is None:
            return
        # Taken before the apply: what the apply itself creates (a timer's catch-up firing) must not run twice.
        unfinished = await asyncio.to_thread(self.store.unfinished_invocations)
        try:
            prepared = await asyncio.to_thread(self.deployer.prepare, current["manifest"], {}, stored=current["bundles"])
            await self.deployer.apply(prepared, restoring=True)
            log.info("restored deployment %s from the data dir", prepared.version)
        except EdgefcError as exc:
            log.error("could not restore deployment %s: %s", current["version"], exc.message)
        await self._resume_invocations(unfinished)

    # ---- deployments -----------------------------------------------------------------------------------------

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        """Validate and apply a deployment. Raises ValidationError or DeployFailed; then nothing changed."""
        assert self.deployer is not None and self.store is not None
        async with self.deployer.lock:
            prepared = await asyncio.to_thread(self.deployer.prepare, manifest_text, uploads)
            return await self._apply(prepared)

    async def _apply(self, prepared: Prepared) -> dict[str, Any]:
        assert self.deployer is not None and self.store is not None
        seq = await asyncio.to_thread(self.store.add_deployment, prepared.version, prepared.manifest_text, prepared.bundles)
        try:
            result = await self.deployer.apply(prepared)
        except EdgefcError as exc:
            await asyncio.to_thread(self.store.mark_deployment, seq, "rolled_back", exc.message)
            raise
        await asyncio.to_thread(self.store.mark_deployment, seq, "applied")
        return result

    async def rollback(self) -> dict[str, Any]:
        """Apply the deployment that was applied before the current one. Raises Conflict when there is none."""
        assert self.deployer is not None and self.store is not None
        async with self.deployer.lock:
            previous = await asyncio.to_thread(self.store.previous)
            if previous is None:
                raise Conflict("there is no previous deployment to roll back to")
            prepared = await asyncio.to_thread(self.deployer.prepare, previous["manifest"], {}, stored=previous["bundles"])
            return await self._apply(prepared)

    async def deployment_info(self) -> dict[str, Any]:
        assert self.store is not None
        current = await asyncio.to_thread(self.store.current)
        previous = await asyncio.to_thread(self.store.previous)
        latest = await asyncio.to_thread(self.store.latest)
        return {
            "version": current["version"] if current else None,
            "manifest": current["manifest"] if current else None,
            "applied_at": current["applied_at"] if current else None,
            "status": latest["status"] if latest else "none",
            "message": latest["message"] if latest else None,
            "previous_version": previous["version"] if previous else None,
            "bundles": current["bundles"] if current else {},
        }

    # ---- functions -------------------------------------------------------------------------------------------

    def has_function(self, name: str) -> bool:
        return self.deployer is not None and name in self.deployer.managers

    def manager(self, name: str) -> FunctionManager:
        manager = self.deployer.manager(name) if self.deployer else None
        if manager is None:
            raise NotFound(f"no function named {name!r} is deployed")
        return manager

    @property
    def router(self) -> Any:
        """The message router (for the messages API)."""
        return self.messaging.router if self.messaging else None

    @property
    def queue(self) -> Any:
        """The durable queue (for the queues API)."""
        return self.messaging.queue if self.messaging else None

    def function_status(self, name: str) -> dict[str, Any]:
        manager = self.manager(name)
        status = manager.status()
        perf = self.perf.snapshot(name)
        status["duration_ms"] = perf.get("duration_ms")
        status["invocations_per_s"] = perf.get("invocations_per_s")
        status["perf"] = perf
        status["memory_limit_bytes"] = manager.plan.memory_mb * 1024 * 1024
        status["log_lines_dropped"] = self.logs.dropped(name) if self.logs else 0
        cpu_total = 0.0
        for inst in status["instances"]:
            sampled = self.stats.instance(inst["id"]) if self.stats else None
            inst["cpu_percent"] = sampled.get("cpu_percent") if sampled else None
            cpu_total += inst["cpu_percent"] or 0.0
        status["cpu_percent"] = cpu_total if status["instances"] else None
        status["memory_bytes"] = sum(i["memory_bytes"] or 0 for i in status["instances"]) if status["instances"] else None
        schedule = None
        fn = self.deployer.manifest.function(name) if self.deployer and self.deployer.manifest else None
        if fn is not None and fn.schedule:
            nxt = self.messaging.timers.next_fire(name) if self.messaging else None
            schedule = {"expression": fn.schedule, "next_fire": nxt.isoformat().replace("+00:00", "Z") if nxt else None}
        status["schedule"] = schedule
        return status

    def _sample(self) -> dict[str, list[InstanceFigures]]:
        """Figures of every running instance, for the stats sampler (runs in a thread)."""
        out: dict[str, list[InstanceFigures]] = {}
        managers = dict(self.deployer.managers) if self.deployer else {}
        for name, manager in managers.items():
            limit = manager.plan.memory_mb * 1024 * 1024
            out[name] = [
                InstanceFigures(r.id, r.instance.pid, r.instance.memory_bytes() or 0, limit, r.instance.cpu_seconds() or 0.0)
                for r in manager.runners()
            ]
        return out

    def mqtt_stats(self) -> dict[str, Any]:
        """The ``mqtt`` part of /v1/stats."""
        return self.messaging.stats() if self.messaging else {}

    def functions_status(self) -> list[dict[str, Any]]:
        managers = self.deployer.managers if self.deployer else {}
        return [self.function_status(n) for n in sorted(managers)]

    async def invoke(self, name: str, payload: bytes, *, trigger: dict[str, Any] | None = None, request_id: str | None = None) -> bytes:
        """Run one event synchronously. Raises NotFound, Busy, Unavailable or FunctionError."""
        return await self.manager(name).invoke(payload, trigger=trigger, request_id=request_id)

    async def invoke_async(self, name: str, payload: bytes, trigger: dict[str, Any] | None = None) -> str:
        """Accept an event for later: it is on disk before this returns, and runs even across a restart."""
        assert self.store is not None
        self.manager(name)
        inv_id = uuid.uuid4().hex
        trigger = trigger or {"type": "invoke"}
        await asyncio.to_thread(self.store.add_invocation, inv_id, name, payload, trigger)
        self._background(self._run_async(inv_id, name, payload, trigger), f"async-{inv_id}")
        return inv_id

    async def _run_async(self, inv_id: str, name: str, payload: bytes, trigger: dict[str, Any]) -> None:
        assert self.store is not None
        await asyncio.to_thread(self.store.start_invocation, inv_id)
        result: bytes | None = None
        error: dict[str, Any] | None = None
        try:
            result = await self.invoke(name, payload, trigger=trigger, request_id=inv_id)
        except EdgefcError as exc:
            error = exc.to_dict()
        await asyncio.to_thread(self.store.finish_invocation, inv_id, result=result, error=error)

    async def _resume_invocations(self, unfinished: list[tuple[str, str, bytes, dict[str, Any]]]) -> None:
        assert self.store is not None
        for inv_id, name, payload, trigger in unfinished:
            if self.has_function(name):
                self._background(self._run_async(inv_id, name, payload, trigger), f"async-{inv_id}")
            else:
                err = {"type": "NotFound", "message": f"function {name!r} is no longer deployed"}
                await asyncio.to_thread(self.store.finish_invocation, inv_id, result=None, error=err)

    async def get_invocation(self, inv_id: str) -> dict[str, Any]:
        assert self.store is not None
        found = await asyncio.to_thread(self.store.invocation, inv_id)
        if found is None:
            raise NotFound(f"no invocation with id {inv_id!r}")
        return found

    async def restart_function(self, name: str) -> None:
        await self.manager(name).restart()

    def _background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- hooks the managers call (supervisor.manager.Hooks) ----------------------------------------------------

    def log(self, function: str, instance_id: str, frame: dict[str, Any]) -> None:
        if self.logs is not None:
            self.logs.append(
                LogEntry(
                    time=frame.get("time") or time.time(), function=function, instance=instance_id,
                    request_id=frame.get("request_id") or "", level=frame.get("level") or "info",
                    stream=frame.get("stream") or "stdout", message=frame.get("message") or "",
                )
            )  # fmt: skip

    async def call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        """Serve an SDK call made by ``function``'s code. Raises EdgefcError (sent back to the caller)."""
        if op == "invoke":
            name = str(args.get("name", ""))
            payload = bytes(args.get("payload") or b"")
            trigger = {"type": "invoke", "source": f"function:{function}"}
            if args.get("type") == "async":
                return await self.invoke_async(name, payload, trigger)
            timeout = args.get("timeout")
            coro = self.invoke(name, payload, trigger=trigger)
            if timeout:
                try:
                    return await asyncio.wait_for(coro, float(timeout))
                except TimeoutError:
                    raise FunctionError("Timeout", f"no answer from {name!r} within {timeout} s") from None
            return await coro
        if op == "publish":
            return await self.publish_from_function(function, args)
        handler = self.call_handlers.get(op.partition(".")[0])
        if handler is not None:
            return await handler(function, op, args)
        raise ValidationError([f"sdk: unknown operation {op!r}"])

    async def publish_from_function(self, function: str, args: dict[str, Any]) -> None:
        assert self.messaging is not None
        payload = args.get("payload") or b""
        await self.messaging.publish(str(args.get("topic", "")), bytes(payload), int(args.get("qos", 0)), "function", function)

    def invocation(self, function: str, trigger: str, outcome: str, seconds: float, cold: bool) -> None:
        self.metrics.invocation(function, trigger, outcome, seconds)
        self.perf.record(function, outcome, seconds, cold)

    def cold_start(self, function: str, seconds: float) -> None:
        self.metrics.cold_start(function, seconds)

    def instance_event(self, function: str, instance_id: str, event: str) -> None:
        for listener in self.instance_listeners:
            try:
                listener(function, instance_id, event)
            except Exception:  # noqa: BLE001 — one listener's bug must not break the supervisor
                log.exception("instance listener failed")

    def restart(self, function: str, reason: str) -> None:
        self.metrics.restart(function, reason)
        self.perf.restart(function, reason)
