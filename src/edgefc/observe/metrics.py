"""Prometheus metrics of a gateway, with exactly the names of CONTRACT §6, rendered in the text exposition
format 0.0.4 by this module.

prometheus_client is not imported: its package ``__init__`` loads its exposition (http.server, wsgiref, ssl,
email), which cost the gateway ~9 MiB of idle RSS for four metric types we need a tenth of. Its parser still
checks our output in the tests.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left

from edgefc.errors import BadRequest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def _number(value: float) -> str:
    """A sample value as Prometheus writes it (Go's float formatting: ``+Inf``, ``NaN``, ``1.0``)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Family:
    """One metric family: a counter or gauge (a float per label set) or a histogram (bucket counts and a sum).

    Counters are named without ``_total``; the exposition adds it, as prometheus_client does.
    """

    def __init__(self, kind: str, name: str, help_text: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...] = ()) -> None:  # fmt: skip
        self.kind, self.name, self.help, self.labelnames = kind, name, help_text, labelnames
        self.buckets = buckets
        self.values: dict[tuple[str, ...], float] = {}
        self.histograms: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts (not cumulative), then sum

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = float(value)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.histograms.get(labels)
        if counts is None:
            counts = self.histograms[labels] = [0.0] * (len(self.buckets) + 2)
        counts[bisect_left(self.buckets, value)] += 1  # le is inclusive: bisect_left puts value == bound in it
        counts[-1] += value

    def remove(self, labels: tuple[str, ...]) -> None:
        self.values.pop(labels, None)
        self.histograms.pop(labels, None)

    def remove_where(self, first: str) -> None:
        """Forget every series whose first label value is ``first`` (a function that is gone)."""
        for store in (self.values, self.histograms):
            for key in [k for k in store if k and k[0] == first]:
                del store[key]

    def render(self, out: list[str]) -> None:
        name = f"{self.name}_total" if self.kind == "counter" else self.name
        out.append(f"# HELP {name} {self.help}")
        out.append(f"# TYPE {name} {self.kind}")
        for labels, value in self.values.items():
            out.append(f"{name}{_labels(self.labelnames, labels)} {_number(value)}")
        for labels, counts in self.histograms.items():
            cumulative = 0.0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=False):
                cumulative += count
                le = f'le="{_number(bound)}"'
                out.append(f"{name}_bucket{_labels(self.labelnames, labels, le)} {_number(cumulative)}")
            out.append(f"{name}_count{_labels(self.labelnames, labels)} {_number(cumulative)}")
            out.append(f"{name}_sum{_labels(self.labelnames, labels)} {_number(counts[-1])}")


class Metrics:
    """The gateway's metrics; every method is cheap and safe to call on the event loop."""

    def __init__(self) -> None:
        fn = ("function",)
        self.invocations = Family("counter", "edgefc_invocations", "Events handled, by trigger and outcome",
                                  ("function", "trigger", "outcome"))  # fmt: skip
        self.duration = Family("histogram", "edgefc_invocation_duration_seconds", "Time from dispatch to answer",
                               fn, _DURATION_BUCKETS)  # fmt: skip
        self.cold_starts = Family("counter", "edgefc_cold_starts", "Instances started for an event", fn)
        self.cold_start_seconds = Family("histogram", "edgefc_cold_start_seconds",
                                         "Time from start to ready of an instance", fn, _COLD_START_BUCKETS)  # fmt: skip
        self.restarts = Family("counter", "edgefc_instance_restarts", "Instances restarted, by reason",
                               ("function", "reason"))  # fmt: skip
        self.memory = Family("gauge", "edgefc_function_memory_bytes", "Memory of all instances", fn)
        self.cpu = Family("counter", "edgefc_function_cpu_seconds", "CPU time of all instances", fn)
        self.routed_total = Family("counter", "edgefc_messages_routed", "Messages delivered by a route", ("route",))
        self.dropped_messages = Family("counter", "edgefc_messages_dropped", "Messages dropped, by reason",
                                       ("route", "reason"))  # fmt: skip
        self.queue = Family("gauge", "edgefc_queue_depth", "Messages waiting in a queue", ("queue",))
        self._families = (self.invocations, self.duration, self.cold_starts, self.cold_start_seconds, self.restarts,
                          self.memory, self.cpu, self.routed_total, self.dropped_messages, self.queue)  # fmt: skip
        self._cpu_seen: dict[tuple[str, str], float] = {}
        self._outcomes = frozenset(o.value for o in Outcome)

    def invocation(self, function: str, trigger: str, outcome: Outcome | str, seconds: float | None) -> None:
        """Count one event; ``seconds`` (None for a refused event) goes into the duration histogram.

        Raises BadRequest for an outcome outside CONTRACT §4's list.
        """
        if outcome not in self._outcomes:
            raise BadRequest(f"outcome: {outcome!r} is not one of {[o.value for o in Outcome]}")
        self.invocations.inc((function, trigger, str(outcome)))
        if seconds is not None:
            self.duration.observe((function,), seconds)

    def cold_start(self, function: str, seconds: float) -> None:
        """Count an instance start and how long it took to become ready."""
        self.cold_starts.inc((function,))
        self.cold_start_seconds.observe((function,), seconds)

    def restart(self, function: str, reason: str) -> None:
        self.restarts.inc((function, reason))

    def set_memory(self, function: str, value: int) -> None:
        self.memory.set((function,), value)

    def add_cpu(self, function: str, cumulative_seconds: float, *, instance: str = "") -> None:
        """Feed an instance's cumulative CPU time; the counter grows by the difference since the last call.

        A new instance counts from zero; a figure lower than before (a reused id) starts a new baseline.
        """
        key = (function, instance)
        previous = self._cpu_seen.get(key, 0.0)
        self._cpu_seen[key] = cumulative_seconds
        if cumulative_seconds > previous:
            self.cpu.inc((function,), cumulative_seconds - previous)

    def forget_instances(self, alive: set[tuple[str, str]]) -> None:
        """Drop the CPU baselines of instances not in ``alive`` ((function, instance) pairs), so none leak."""
        for key in [k for k in self._cpu_seen if k not in alive]:
            del self._cpu_seen[key]

    def routed(self, route: str) -> None:
        self.routed_total.inc((route,))

    def dropped(self, route: str, reason: str) -> None:
        self.dropped_messages.inc((route, reason))

    def queue_depth(self, queue: str, n: int) -> None:
        self.queue.set((queue,), n)

    def remove_function(self, function: str) -> None:
        """Forget the series of a function that is no longer deployed."""
        for family in (self.invocations, self.duration, self.cold_starts, self.cold_start_seconds, self.restarts,
                       self.memory, self.cpu):  # fmt: skip
            family.remove_where(function)
        self.forget_instances({k for k in self._cpu_seen if k[0] != function})

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition: (body, content type)."""
        out: list[str] = []
        for family in self._families:
            family.render(out)
        return ("\n".join(out) + "\n").encode(), CONTENT_TYPE
