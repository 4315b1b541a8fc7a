"""A driver's first report, made while its module is imported, is routed: at a deploy and at a gateway start."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.gateway_harness import GatewayProcess, fn

DRIVER = """
import os, time
import lethingaccesssdk

class Meter(lethingaccesssdk.ThingCallback):
    def getProperties(self, input_value):
        return 0, {}

for info in lethingaccesssdk.Config().getThingInfos():
    client = lethingaccesssdk.ThingAccessClient(info)
    client.registerAndOnline(Meter())
    client.reportProperties({"boot": os.getpid()})

def handler(event, context):
    return 'hello world'

while True:
    time.sleep(1)
"""

RECORDER = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(event.decode() + "\\n")
"""


def boots(out: Path) -> list[int]:
    if not out.exists():
        return []
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return [json.loads(m["payload"])["boot"]["value"] for m in lines if m["topic"].endswith("/property/post")]


def test_the_report_made_at_import_arrives_after_a_deploy_and_after_a_restart(gateway: GatewayProcess, tmp_path: Path) -> None:
    out = tmp_path / "reports.jsonl"
    manifest = {
        "functions": [fn("Meter", mode="continuous", memory_mb=64), fn("recorder", memory_mb=64, env={"OUT": str(out)})],
        "routes": [{"name": "r", "source": "device:/mpk/+", "topic": "/sys/+/+/thing/event/property/post",
                    "target": "function:recorder"}],
        "devices": [{"product_key": "mpk", "device_name": "m1", "driver": "Meter"}],
    }  # fmt: skip
    gateway.deploy(manifest, {"Meter": DRIVER, "recorder": RECORDER})
    first = gateway.wait_for(lambda: boots(out), timeout=10, what="the report made at import")
    assert len(first) == 1
    # The gateway starts again from its data dir: the driver's new instance reports at import once more.
    assert gateway.stop() == 0
    gateway.start()
    both = gateway.wait_for(lambda: (b := boots(out)) and len(b) == 2 and b, timeout=15, what="the report made at the restart")
    assert both[0] != both[1]  # two instances, two pids
