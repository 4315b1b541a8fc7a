"""Function status as the API shows it (CONTRACT §4): a manager's own figures joined with perf, stats and timers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edgefc.errors import NotFound
from edgefc.invoker.table import FunctionTable
from edgefc.observe.figures import InstanceFigures
from edgefc.observe.logs import LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker
from edgefc.observe.stats import StatsCollector
from edgefc.supervisor.manager import FunctionManager

if TYPE_CHECKING:
    from edgefc.gateway.deploy import Prepared

NextFire = Callable[[str], datetime | None]


class FunctionStatus:
    """Reads the function table; owns nothing."""

    def __init__(self, table: FunctionTable, *, perf: PerfTracker, logs: LogStore, next_fire: NextFire,
                 schedules: Callable[[str], str | None]) -> None:  # fmt: skip
        self.table = table
        self.perf = perf
        self.logs = logs
        self.next_fire = next_fire
        self.schedules = schedules
        self.stats: StatsCollector | None = None  # attached once the sampler (which reads figures from here) exists

    def one(self, name: str) -> dict[str, Any]:
        """Status of one function. Raises NotFound."""
        manager = self.table.get(name)
        if manager is None:
            raise NotFound(f"no function named {name!r} is deployed")
        return self._status(manager)

    def all(self) -> list[dict[str, Any]]:
        managers = self.table.snapshot()
        return [self._status(managers[n]) for n in sorted(managers)]

    def _status(self, manager: FunctionManager) -> dict[str, Any]:
        name = manager.name
        status = manager.status()
        perf = self.perf.snapshot(name)
        status["duration_ms"] = perf.get("duration_ms")
        status["invocations_per_s"] = perf.get("invocations_per_s")
        status["perf"] = perf
        status["memory_limit_bytes"] = manager.plan.memory_mb * 1024 * 1024
        status["log_lines_dropped"] = self.logs.dropped(name)
        cpu_total = 0.0
        for inst in status["instances"]:
            sampled = self.stats.instance(inst["id"]) if self.stats is not None else None
            inst["cpu_percent"] = sampled.get("cpu_percent") if sampled else None
            cpu_total += inst["cpu_percent"] or 0.0
        status["cpu_percent"] = cpu_total if status["instances"] else None
        status["memory_bytes"] = sum(i["memory_bytes"] or 0 for i in status["instances"]) if status["instances"] else None
        schedule = None
        expression = self.schedules(name)
        if expression:
            nxt = self.next_fire(name)
            schedule = {"expression": expression, "next_fire": nxt.isoformat().replace("+00:00", "Z") if nxt else None}
        status["schedule"] = schedule
        return status

    def sample(self) -> dict[str, list[InstanceFigures]]:
        """Figures of every running instance, for the stats sampler (runs in a thread)."""
        out: dict[str, list[InstanceFigures]] = {}
        for name, manager in self.table.snapshot().items():
            limit = manager.plan.memory_mb * 1024 * 1024
            out[name] = [
                InstanceFigures(r.id, r.instance.pid, r.instance.memory_bytes() or 0, limit, r.instance.cpu_seconds() or 0.0)
                for r in manager.runners()
            ]
        return out


class FigureReset:
    """A deployment hook: the figures ``ps`` shows (invocations, errors, durations) count the running version, so
    a function's new version starts them from zero; a removed function's figures and metric series go."""

    def __init__(self, perf: PerfTracker, metrics: Metrics) -> None:
        self.perf = perf
        self.metrics = metrics
        self._running: dict[str, str] = {}  # function → fingerprint of the version applied last

    def __call__(self, prepared: Prepared) -> None:
        for name, plan in prepared.plans.items():
            if self._running.get(name, plan.fingerprint) != plan.fingerprint:
                self.perf.forget(name)
        for name in set(self._running) - set(prepared.plans):
            self.perf.forget(name)
            self.metrics.remove_function(name)
        self._running = {name: plan.fingerprint for name, plan in prepared.plans.items()}
