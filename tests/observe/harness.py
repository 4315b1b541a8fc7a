"""A small app holding the real store, stats, metrics and perf, as the gateway's app will (for the API and CLI tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from edgefc.api.app import routed_app
from edgefc.api.observe import router
from edgefc.api.routing import Router
from edgefc.config.gateway import GatewayConfig
from edgefc.observe.logs import LogEntry, LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker
from edgefc.observe.stats import StatsCollector


@dataclass
class State:
    logs: LogStore
    stats: StatsCollector
    metrics: Metrics
    perf: PerfTracker
    functions: set[str] = field(default_factory=lambda: {"alarm", "quiet"})
    status: list[dict[str, Any]] = field(default_factory=list)
    config: GatewayConfig = field(default_factory=GatewayConfig)  # the settings the API reads (logs.follow_stall_s)
    cloud: None = None  # no cloud agent: /v1/stats says "cloud": null

    def has_function(self, name: str) -> bool:
        return name in self.functions

    # What the API reads of the gateway's composition root: ``invoker.has(name)``, ``mqtt_stats()``, ``cloud``.
    @property
    def invoker(self) -> State:
        return self

    def has(self, name: str) -> bool:
        return name in self.functions

    def mqtt_stats(self) -> dict[str, Any]:
        return {}


def make_app(state: State) -> Starlette:
    status = Router(tags=["functions"])

    @status.get("/v1/functions")
    async def functions() -> list[dict[str, Any]]:  # the gateway's status route, for `top`
        return state.status

    return routed_app([status, router], state)


def line(message: str, *, level: str = "info", request_id: str = "", t: float | None = None) -> LogEntry:
    return LogEntry(time.time() if t is None else t, "alarm", "alarm-1", request_id, level, "stdout", message)
