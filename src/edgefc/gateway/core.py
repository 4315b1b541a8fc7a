"""The composition root: builds every part of one gateway in order, and takes them down in reverse.

Each part is entered into one :class:`contextlib.AsyncExitStack` as soon as it is open, so whatever fails —
a port taken, a broken data dir, a cancelled start — closes exactly what was opened, in reverse order, and a
:class:`Gateway` only exists with every part in place (no ``X | None``, no asserts). Parts reach each other
through the narrow interfaces they are given here, never through the gateway.

    triggers:  api · router/timers (gateway.messaging) · devices · SDK calls
                        │
                     invoker  ── events sink (metrics, perf, logs, instance events)
                        │
    supervisor: function table → managers → instances ── sandbox (process | container) ── worker
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefc.config.gateway import GatewayConfig
from edgefc.devices.service import DeviceService
from edgefc.gateway.deploy import Deployer, Limits
from edgefc.gateway.deployments import Deployments
from edgefc.gateway.messaging import Messaging
from edgefc.gateway.placement import Placement
from edgefc.gateway.secrets import MIN_TOKEN_CHARS, ensure_secret
from edgefc.gateway.status import FigureReset, FunctionStatus
from edgefc.gateway.store import StateStore
from edgefc.invoker import EventSink, FunctionTable, Invoker
from edgefc.observe.gatewaylog import GatewayLogHandler
from edgefc.observe.housekeeping import Housekeeper
from edgefc.observe.logs import LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker
from edgefc.observe.stats import StatsCollector
from edgefc.package import BundleStore
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.supervisor.hub import WorkerHub
from edgefc.supervisor.manager import FunctionManager
from edgefc.supervisor.plan import FunctionPlan
from edgefc.tasks import TaskGroup

if TYPE_CHECKING:
    from edgefc.cloud.agent import CloudAgent

log = logging.getLogger("edgefc.gateway")


def _socket_path(run_dir: Path) -> Path:
    """The worker socket; Unix socket paths are limited to ~107 bytes, so long data dirs use /tmp."""
    path = run_dir / "worker.sock"
    if len(str(path)) <= 100:
        return path
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"edgefc-{digest}" / "worker.sock"


def _prepare_data_dir(config: GatewayConfig) -> tuple[Path, Path, str, str]:
    """(data dir, run dir, admin token, gateway id), made on first start. Raises OSError, ValidationError."""
    data_dir = Path(config.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    token = ensure_secret(data_dir / "admin.token", 32, min_chars=MIN_TOKEN_CHARS)
    gateway_id = ensure_secret(data_dir / "gateway.id", 4)
    run_dir = data_dir / "run"
    run_dir.mkdir(exist_ok=True)
    return data_dir, run_dir, token, gateway_id


@dataclass
class Gateway:
    """Every part of one running gateway; made only by :meth:`open`."""

    config: GatewayConfig
    data_dir: Path
    token: str
    gateway_id: str
    started_at: float
    tasks: TaskGroup  # the one task group: its ``failed`` event means "stop the gateway, loudly"
    store: StateStore
    logs: LogStore
    metrics: Metrics
    perf: PerfTracker
    events: EventSink
    hub: WorkerHub
    placement: Placement
    table: FunctionTable
    invoker: Invoker
    deployer: Deployer
    deployments: Deployments
    messaging: Messaging
    devices: DeviceService
    status: FunctionStatus
    stats: StatsCollector

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: GatewayConfig) -> AsyncIterator[Gateway]:
        """Open everything, re-apply the last applied deployment (no network needed), yield the gateway; on exit
        (or on any failure while opening) close what was opened, in reverse. Raises EdgefcError, OSError."""
        data_dir, run_dir, token, gateway_id = await asyncio.to_thread(_prepare_data_dir, config)
        async with contextlib.AsyncExitStack() as stack:
            tasks = TaskGroup("gateway")
            stack.push_async_callback(tasks.aclose)  # closed last: every part has stopped its own tasks by then
            store = await asyncio.to_thread(StateStore, data_dir / "state.db")
            stack.callback(store.close)
            lc = config.logs
            logs = LogStore(
                data_dir / "logs.db", max_bytes_per_function=lc.max_bytes_per_function, max_age_s=lc.max_age_s,
                rate_limit_lines_per_s=lc.rate_limit_lines_per_s, max_line_bytes=lc.max_line_bytes,
            )  # fmt: skip
            await logs.start()
            stack.push_async_callback(logs.close)
            handler = GatewayLogHandler(logs)
            logging.getLogger("edgefc").addHandler(handler)
            stack.callback(logging.getLogger("edgefc").removeHandler, handler)
            metrics, perf = Metrics(), PerfTracker()
            events = EventSink(metrics=metrics, perf=perf, logs=logs)

            hub = WorkerHub(_socket_path(run_dir))
            await hub.start()
            stack.push_async_callback(hub.close)
            placement = Placement(config.isolation.value, run_dir, data_dir, gateway_id, tasks=tasks.child("sandboxes"))
            stack.push_async_callback(placement.close)
            await placement.open()

            table = FunctionTable()
            invoker = Invoker(table, store, events=events, tasks=tasks)

            def make_manager(plan: FunctionPlan) -> FunctionManager:
                return FunctionManager(plan, sandbox=placement.sandboxes[plan.isolation], hub=hub, events=events,
                                       calls=invoker, tasks=tasks, socket_path=hub.socket_path,
                                       log_lines_per_s=config.logs.rate_limit_lines_per_s)  # fmt: skip

            limits = Limits(config.limits.max_bundle_bytes, config.limits.max_bundle_files,
                            config.limits.parallel_starts)  # fmt: skip
            deployer = Deployer(BundleStore(data_dir), limits, table=table, make_manager=make_manager,
                                resolve_isolation=placement.resolve, tasks=tasks)  # fmt: skip
            stack.push_async_callback(deployer.close)
            # Async invocations are cancelled before their functions stop, so that they stay unfinished in the
            # store and run again at the next start, rather than being recorded as failed by the shutdown.
            stack.push_async_callback(invoker.aclose)
            deployer.extra_checks.append(lambda m: placement.host_problems(m, (x.plan for x in table.snapshot().values())))

            # The router and timers reach functions only through the invoker (messaging.py's two callables).
            messaging = Messaging(
                config, data_dir, gateway_id, metrics,
                invoke=lambda n, p, t: invoker.invoke(n, p, trigger=t), invoke_async=invoker.invoke_async,
            )  # fmt: skip
            stack.push_async_callback(messaging.close)  # closed before the deployer: no delivery to a stopped function
            await messaging.start()
            deployer.extra_checks.append(messaging.check)
            deployer.on_applied.append(lambda prepared: messaging.apply(prepared.manifest))

            async def publish(topic: str, payload: bytes, qos: int, source_type: str, source_id: str) -> str:
                return await messaging.publish(topic, payload, qos, source_type, source_id)

            async def sdk_publish(function: str, op: str, args: dict[str, Any]) -> None:
                payload = args.get("payload") or b""
                await publish(str(args.get("topic", "")), bytes(payload), int(args.get("qos", 0)), "function", function)

            invoker.handle("publish", sdk_publish)
            devices = DeviceService(functions=invoker, deployments=deployer, publish=publish, tasks=tasks)
            stack.callback(devices.close)

            def schedule_of(name: str) -> str | None:
                fn = deployer.manifest.function(name) if deployer.manifest is not None else None
                return fn.schedule if fn is not None else None

            status = FunctionStatus(table, perf=perf, logs=logs, next_fire=messaging.timers.next_fire, schedules=schedule_of)
            stats = StatsCollector(status.sample, data_dir, metrics=metrics)
            await stats.start()
            stack.push_async_callback(stats.close)
            status.stats = stats
            deployer.on_applied.append(lambda _: stats.sample_now())  # fresh figures right after a deployment
            deployer.on_applied.append(FigureReset(perf, metrics))
            deployments = Deployments(deployer, store, invoker)

            gateway = cls(
                config=config, data_dir=data_dir, token=token, gateway_id=gateway_id, started_at=time.time(),
                tasks=tasks, store=store, logs=logs, metrics=metrics, perf=perf, events=events, hub=hub,
                placement=placement, table=table, invoker=invoker, deployer=deployer, deployments=deployments,
                messaging=messaging, devices=devices, status=status, stats=stats,
            )  # fmt: skip
            await deployments.restore()
            housekeeper = Housekeeper(
                config.housekeeping, state_db=data_dir / "state.db", history=store, bundles=deployer.bundles,
                lock=deployer.lock, running_bundles=lambda: {m.plan.code_sha for m in table.snapshot().values()},
            )  # fmt: skip
            tasks.service(housekeeper.run, "housekeeping")  # prunes invocations and bundles (docs/security.md)

            # ---- optional components ----------------------------------------------------------------------------
            # Entered here: after the core is up and the last deployment restored, before the API serves; the
            # stack closes them first. Each gets the narrow interface it needs, never the Gateway itself.
            if config.cloud.url:
                await _start_cloud_agent(gateway, stack)
            yield gateway

    cloud: CloudAgent | None = None  # set when ``cloud.url`` is configured

    def control(self) -> Control:
        """What a remote control plane (the cloud agent) may do with this gateway."""
        return Control(self)

    @property
    def router(self) -> Router:
        """The message router (the messages API publishes and replays through it)."""
        return self.messaging.router

    @property
    def queue(self) -> DurableQueue:
        """The durable queue (the queues API reads its figures)."""
        return self.messaging.queue

    def mqtt_stats(self) -> dict[str, Any]:
        """The ``mqtt`` part of /v1/stats."""
        return self.messaging.stats()


async def _start_cloud_agent(gateway: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """Run the cloud agent (issue 11) in its own task group, stopped before the core; raises ValidationError for an
    incomplete ``cloud`` section."""
    from edgefc.cloud.agent import CloudAgent
    from edgefc.gateway.cloudport import CloudPort

    cloud = gateway.config.cloud
    port = CloudPort(gateway)
    stack.push_async_callback(port.aclose)
    agent = CloudAgent(port, cloud)
    group = gateway.tasks.child("cloud")
    stack.push_async_callback(group.aclose)
    group.service(agent.run, "cloud-agent")
    gateway.cloud = agent


class Control:
    """The operations a cloud agent needs, on one gateway (the same paths the HTTP API uses)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        """Raises ValidationError or DeployFailed; then nothing changed."""
        return await self._gw.deployments.deploy(manifest_text, uploads)

    async def deployment_info(self) -> dict[str, Any]:
        return await self._gw.deployments.info()

    def functions_status(self) -> list[dict[str, Any]]:
        return self._gw.status.all()

    def host_stats(self) -> dict[str, Any]:
        """The ``host`` part of /v1/stats."""
        host: dict[str, Any] = self._gw.stats.snapshot(history_s=0)["host"]
        return host

    async def query_logs(self, function: str, **query: Any) -> list[dict[str, Any]]:
        """Log entries as GET /v1/functions/{name}/logs selects them (``since``, ``until``, ``filt``, ``limit``,
        ``ascending``: see :meth:`edgefc.observe.logs.LogStore.select`)."""
        return [row.to_dict() for row in await self._gw.logs.aselect(function, **query)]
