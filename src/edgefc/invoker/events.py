"""The events sink: where function managers report, fanned out to metrics, perf figures, logs and listeners."""

from __future__ import annotations

import logging
import time
from typing import Any

from edgefc.invoker.ports import InstanceListener
from edgefc.observe.entry import LogEntry
from edgefc.observe.logs import LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker

log = logging.getLogger("edgefc.invoker")



class EventSink:
    """Implements :class:`edgefc.supervisor.ports.Events` for the gateway. Never raises."""

    def __init__(self, *, metrics: Metrics, perf: PerfTracker, logs: LogStore) -> None:
        self.metrics = metrics
        self.perf = perf
        self.logs = logs
        self._listeners: list[InstanceListener] = []

    def listen(self, listener: InstanceListener) -> None:
        """Be told when an instance becomes ready or ends."""
        self._listeners.append(listener)

    def unlisten(self, listener: InstanceListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def log(self, function: str, instance_id: str, frame: dict[str, Any]) -> None:
        dropped = frame.get("dropped")
        if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
            self.logs.count_dropped(function, dropped)  # lines the worker dropped over the function's budget
            if "message" not in frame:
                return
        self.logs.append(
            LogEntry(
                time=frame.get("time") or time.time(), function=function, instance=instance_id,
                request_id=frame.get("request_id") or "", level=frame.get("level") or "info",
                stream=frame.get("stream") or "stdout", message=frame.get("message") or "",
            )
        )  # fmt: skip

    def invocation(self, function: str, trigger: str, outcome: str, seconds: float, cold: bool) -> None:
        self.metrics.invocation(function, trigger, outcome, seconds)
        self.perf.record(function, outcome, seconds, cold)

    def cold_start(self, function: str, seconds: float) -> None:
        self.metrics.cold_start(function, seconds)

    def restart(self, function: str, reason: str) -> None:
        self.metrics.restart(function, reason)
        self.perf.restart(function, reason)

    def instance_event(self, function: str, instance_id: str, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(function, instance_id, event)
            except Exception:  # noqa: BLE001 — one listener's bug must not break the supervisor
                log.exception("instance listener failed")
