"""QoS 1 under chaos: the gateway, its Mosquitto and the doubler's worker are SIGKILLed, the cloud broker
stopped at once, at random instants while a device publishes; every reading the broker acknowledged ends up on
every path.

Bounded here (``make test``, about a minute); ``make chaos`` runs it for ``EDGEFC_CHAOS_SECONDS`` (default 300).
The ledger (``tests/e2e/chaos_rig.py``) sorts each acknowledged reading, per path, into delivered once,
duplicated, dead-lettered (with the reason) or lost; lost must be 0.

A kill -9 of the managed Mosquitto can lose what it acknowledged in the instant before its save (it sends the
PUBACK first: docs/routing.md); the ledger counts such readings apart, as ``lost_at_broker_kill``, only when a
reading is missing on *every* path (it never reached the gateway) and its PUBACK came within the last moment
before that kill (as the device recorded it: up to 50 ms late). Anything else missing is ``lost``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.e2e.chaos_rig import ChaosRig, ledger_json

pytestmark = [pytest.mark.e2e, pytest.mark.needs_mosquitto]
log = logging.getLogger(__name__)

SECONDS = float(os.environ.get("EDGEFC_CHAOS_SECONDS", "14"))
SEED = int(os.environ.get("EDGEFC_CHAOS_SEED", "0")) or None


@pytest.mark.timeout(int(SECONDS) + 150)
def test_no_acknowledged_reading_is_lost_under_random_kills(tmp_path: Path) -> None:
    rig = ChaosRig(tmp_path, need_binary("mosquitto"), seed=SEED)
    try:
        rig.start()
        rig.run(SECONDS, gap=(0.2, 1.0))
        ledger = rig.settle(timeout=60)
    finally:
        rig.close()
    print("chaos ledger:", ledger_json(ledger))
    assert ledger.acknowledged >= 200, f"too little got through to prove anything: {ledger_json(ledger)}"
    assert sum(ledger.kills.values()) >= 6 and set(ledger.kills) >= {"gateway", "worker", "cloud", "broker"}
    assert ledger.lost_total == 0, f"acknowledged readings lost: {ledger_json(ledger)}"
    assert not any(ledger.dead_lettered.values()), f"kills are not the messages' fault: {ledger_json(ledger)}"
