"""Prometheus metrics of a gateway, with exactly the names of CONTRACT §6, in a registry of its own."""

from __future__ import annotations

import enum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edgefc.errors import BadRequest

_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_COLD_START_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Outcome(enum.StrEnum):
    """How an event ended, the ``outcome`` label of ``edgefc_invocations_total``."""

    SUCCESS = "success"
    ERROR = "error"  # the handler raised (Handled)
    TIMEOUT = "timeout"
    OOM = "oom"
    UNHANDLED = "unhandled"  # the instance died
    BUSY = "busy"  # refused: the function's queue was full


class Metrics:
    """The gateway's metrics; every method is cheap and safe to call on the event loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.invocations = Counter(
            "edgefc_invocations", "Events handled, by trigger and outcome", ["function", "trigger", "outcome"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "edgefc_invocation_duration_seconds", "Time from dispatch to answer", ["function"],
            buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.cold_starts = Counter(
            "edgefc_cold_starts", "Instances started for an event", ["function"], registry=r
        )
        self.cold_start_seconds = Histogram(
            "edgefc_cold_start_seconds", "Time from start to ready of an instance", ["function"],
            buckets=_COLD_START_BUCKETS, registry=r,
        )  # fmt: skip
        self.restarts = Counter(
            "edgefc_instance_restarts", "Instances restarted, by reason", ["function", "reason"], registry=r
        )
        self.memory = Gauge(
            "edgefc_function_memory_bytes", "Memory of all instances", ["function"], registry=r
        )
        self.cpu = Counter(
            "edgefc_function_cpu_seconds", "CPU time of all instances", ["function"], registry=r
        )
        self.routed_total = Counter(
            "edgefc_messages_routed", "Messages delivered by a route", ["route"], registry=r
        )
        self.dropped_messages = Counter(
            "edgefc_messages_dropped", "Messages dropped, by reason", ["route", "reason"], registry=r
        )
        self.queue = Gauge("edgefc_queue_depth", "Messages waiting in a queue", ["queue"], registry=r)
        self._cpu_seen: dict[tuple[str, str], float] = {}
        self._label_sets: dict[str, set[tuple[Counter, tuple[str, ...]]]] = {}  # for remove_function
        # Label children of the per-message counters, so routing a message costs no ``labels()`` lookup.
        self._routed: dict[str, Counter] = {}
        self._dropped: dict[tuple[str, str], Counter] = {}
        # (function, trigger, outcome) → (counter child, histogram child): labels() costs more than inc()
        self._invocation_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def invocation(self, function: str, trigger: str, outcome: Outcome | str, seconds: float | None) -> None:
        """Count one event; ``seconds`` (None for a refused event) goes into the duration histogram.

        Raises BadRequest for an outcome outside CONTRACT §4's list.
        """
        children = self._invocation_children.get((function, trigger, outcome))
        if children is None:
            try:
                label = Outcome(outcome).value
            except ValueError:
                raise BadRequest(f"outcome: {outcome!r} is not one of {[o.value for o in Outcome]}") from None
            self._label_sets.setdefault(function, set()).add((self.invocations, (function, trigger, label)))
            children = (self.invocations.labels(function, trigger, label), self.duration.labels(function))
            self._invocation_children[(function, trigger, label)] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def cold_start(self, function: str, seconds: float) -> None:
        """Count an instance start and how long it took to become ready."""
        self.cold_starts.labels(function).inc()
        self.cold_start_seconds.labels(function).observe(seconds)

    def restart(self, function: str, reason: str) -> None:
        self.restarts.labels(function, reason).inc()
        self._label_sets.setdefault(function, set()).add((self.restarts, (function, reason)))

    def set_memory(self, function: str, value: int) -> None:
        self.memory.labels(function).set(value)

    def add_cpu(self, function: str, cumulative_seconds: float, *, instance: str = "") -> None:
        """Feed an instance's cumulative CPU time; the counter grows by the difference since the last call.

        A new instance counts from zero; a figure lower than before (a reused id) starts a new baseline.
        """
        key = (function, instance)
        previous = self._cpu_seen.get(key, 0.0)
        self._cpu_seen[key] = cumulative_seconds
        if cumulative_seconds > previous:
            self.cpu.labels(function).inc(cumulative_seconds - previous)

    def forget_instances(self, alive: set[tuple[str, str]]) -> None:
        """Drop the CPU baselines of instances not in ``alive`` ((function, instance) pairs), so none leak."""
        for key in [k for k in self._cpu_seen if k not in alive]:
            del self._cpu_seen[key]

    def routed(self, route: str) -> None:
        child = self._routed.get(route)
        if child is None:
            child = self._routed[route] = self.routed_total.labels(route)
        child.inc()

    def dropped(self, route: str, reason: str) -> None:
        child = self._dropped.get((route, reason))
        if child is None:
            child = self._dropped[(route, reason)] = self.dropped_messages.labels(route, reason)
        child.inc()

    def queue_depth(self, queue: str, n: int) -> None:
        self.queue.labels(queue).set(n)

    def remove_function(self, function: str) -> None:
        """Forget the series of a function that is no longer deployed."""
        for metric in (self.duration, self.cold_starts, self.cold_start_seconds, self.memory, self.cpu):
            try:
                metric.remove(function)
            except KeyError:
                pass
        for counter, values in self._label_sets.pop(function, set()):
            counter.remove(*values)
        for key in [k for k in self._invocation_children if k[0] == function]:
            del self._invocation_children[key]
        self.forget_instances({k for k in self._cpu_seen if k[0] != function})

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition: (body, content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
