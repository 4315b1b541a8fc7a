"""QoS 1 under chaos, and what durability costs: ``qos1_chaos_lost``, ``qos1_chaos_duplicates_fraction``, and the
MQTT → function figure at QoS 1 (``mqtt_to_function_qos1_per_s``) and QoS 0
(``mqtt_to_function_every_change_per_s``) with the managed Mosquitto saving after every change, each against
the same path saving every 10 s, in the same run.

The chaos figures come from ``tests/e2e/chaos_rig.py`` (the same rig as ``tests/e2e/test_chaos.py``): a device
publishes QoS 1 readings through three routes (function → cloud, MQTT target, cloud) while the gateway, its
Mosquitto, the function's worker and the cloud broker are SIGKILLed at random; every acknowledged reading is
looked for on every path. ``EDGEFC_CHAOS_SECONDS`` (default 40) sets how long.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_mqtt import relay_through_gateway
from bench.figure import at_most, figure, skipped

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _chaos(seconds: float) -> dict[str, dict[str, Any]]:
    from tests.e2e.chaos_rig import ChaosRig

    with tempfile.TemporaryDirectory(prefix="edgefc-bench-chaos-") as tmp:
        rig = ChaosRig(Path(tmp), MOSQUITTO)
        try:
            rig.start()
            rig.run(seconds)
            ledger = rig.settle(timeout=60)
        finally:
            rig.close()
    summary = ledger.summary()
    kills = sum(ledger.kills.values())
    return {
        "qos1_chaos_lost": figure(ledger.lost_total, "messages", n=ledger.acknowledged, target=at_most(0),
                                  kills=kills, ledger=summary),  # fmt: skip
        "qos1_chaos_duplicates_fraction": figure(ledger.duplicates_fraction, "fraction", n=ledger.acknowledged,
                                                 kills=kills, ledger=summary),  # fmt: skip
    }


def _durability_cost(n: int = 5000) -> dict[str, dict[str, Any]]:
    durable = relay_through_gateway(n, qos=1, persistence="every_change", latency_samples=200)
    timed = relay_through_gateway(n, qos=1, persistence="interval", latency_samples=200)
    durable0 = relay_through_gateway(4 * n, persistence="every_change", latency_samples=200)
    timed0 = relay_through_gateway(4 * n, persistence="interval", latency_samples=200)
    return {
        "mqtt_to_function_every_change_per_s": figure(
            durable0["per_s"], "per_s", n=4 * n,
            baseline=timed0["per_s"], baseline_what="the same QoS 0 path with mqtt.persistence: interval (10 s)",
            persistence="every_change", qos=0, received=durable0["received"], baseline_received=timed0["received"],
        ),  # fmt: skip
        "mqtt_to_function_qos1_per_s": figure(
            durable["per_s"], "per_s", n=n,
            baseline=timed["per_s"], baseline_what="the same QoS 1 path with mqtt.persistence: interval (10 s)",
            persistence="every_change", p50_ms=durable["p50_ms"], received=durable["received"],
            baseline_p50_ms=timed["p50_ms"], baseline_received=timed["received"],
        )  # fmt: skip
    }


def run() -> dict[str, dict[str, Any]]:
    """The chaos ledger figures and the durability cost; skipped figures where Mosquitto is missing."""
    if not os.access(MOSQUITTO, os.X_OK):
        why = "mosquitto is not installed"
        return {name: skipped(unit, why) for name, unit in (("qos1_chaos_lost", "messages"),
                ("qos1_chaos_duplicates_fraction", "fraction"), ("mqtt_to_function_qos1_per_s", "per_s"))}  # fmt: skip
    figures = _durability_cost()
    figures.update(_chaos(float(os.environ.get("EDGEFC_CHAOS_SECONDS", "40"))))
    return figures
