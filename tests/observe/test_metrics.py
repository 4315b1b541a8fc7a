"""Prometheus metrics: CONTRACT §6 names, parse with the official text parser, counters move."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgefc.errors import BadRequest
from edgefc.observe.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_contract_names_and_counters_move() -> None:
    m = Metrics()
    m.invocation("alarm", "invoke", "success", 0.004)
    m.invocation("alarm", "invoke", "success", 0.006)
    m.invocation("alarm", "timer", "timeout", 3.0)
    m.invocation("alarm", "message", "busy", None)
    m.cold_start("alarm", 0.025)
    m.restart("alarm", "oom")
    m.set_memory("alarm", 52_000_000)
    m.add_cpu("alarm", 1.5, instance="a1")
    m.add_cpu("alarm", 2.0, instance="a1")
    m.add_cpu("alarm", 0.5, instance="a2")
    m.routed("r1")
    m.dropped("r1", "queue_full")
    m.queue_depth("cloud", 7)

    names = {name for name, _ in samples(m)}
    for expected in [
        "edgefc_invocations_total", "edgefc_invocation_duration_seconds_bucket",
        "edgefc_invocation_duration_seconds_count", "edgefc_cold_starts_total", "edgefc_cold_start_seconds_sum",
        "edgefc_instance_restarts_total", "edgefc_function_memory_bytes", "edgefc_function_cpu_seconds_total",
        "edgefc_messages_routed_total", "edgefc_messages_dropped_total", "edgefc_queue_depth",
    ]:  # fmt: skip
        assert expected in names
    assert value(m, "edgefc_invocations_total", function="alarm", trigger="invoke", outcome="success") == 2
    assert value(m, "edgefc_invocations_total", function="alarm", trigger="message", outcome="busy") == 1
    assert value(m, "edgefc_invocation_duration_seconds_count", function="alarm") == 3
    assert value(m, "edgefc_invocation_duration_seconds_bucket", function="alarm", le="0.005") == 1
    assert value(m, "edgefc_cold_starts_total", function="alarm") == 1
    assert value(m, "edgefc_instance_restarts_total", function="alarm", reason="oom") == 1
    assert value(m, "edgefc_function_memory_bytes", function="alarm") == 52_000_000
    assert value(m, "edgefc_function_cpu_seconds_total", function="alarm") == pytest.approx(2.5)
    assert value(m, "edgefc_messages_dropped_total", route="r1", reason="queue_full") == 1
    assert value(m, "edgefc_queue_depth", queue="cloud") == 7


def test_cpu_baselines_do_not_leak_and_reset() -> None:
    m = Metrics()
    m.add_cpu("f", 5.0, instance="old")
    m.add_cpu("f", 1.0, instance="old")  # lower: a new baseline, the counter never goes down
    m.add_cpu("f", 1.5, instance="old")
    assert value(m, "edgefc_function_cpu_seconds_total", function="f") == pytest.approx(5.5)
    m.forget_instances({("f", "new")})
    assert m._cpu_seen == {}


def test_bad_outcome_and_remove_function() -> None:
    m = Metrics()
    with pytest.raises(BadRequest, match="outcome"):
        m.invocation("f", "invoke", "weird", 0.1)
    m.invocation("f", "invoke", "error", 0.1)
    m.restart("f", "exited")
    m.set_memory("f", 1)
    m.invocation("g", "invoke", "success", 0.1)
    m.remove_function("f")
    assert not [k for k in samples(m) if ("function", "f") in k[1]]
    assert value(m, "edgefc_invocations_total", function="g", trigger="invoke", outcome="success") == 1
