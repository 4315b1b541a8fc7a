"""A Node.js function in a runc container: the worker, its SDK and the Link IoT Edge shims work inside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.e2e.test_containers import require_containers
from tests.node.conftest import entry, js, need_node

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root, pytest.mark.needs_runc, pytest.mark.timeout(90)]

INSIDE = """
const fs = require('fs');
const os = require('os');
const fc = require('edgefc');
const { IoTData } = require('linkedge-core-sdk');
exports.handler = async (event, context) => {
  let codeWritable = true;
  try { fs.writeFileSync('/code/x', 'x'); } catch (err) { codeWritable = false; }
  const python = (await fc.invoke('py-inside', 'from node')).toString();
  return {uid: process.getuid(), hostname: os.hostname(), cwd: process.cwd(), codeWritable, python,
          shim: typeof IoTData, heap: process.execArgv.find((a) => a.startsWith('--max-old-space-size'))};
};
"""

PY_INSIDE = """
import os
def handler(event, context):
    return b"python " + str(os.getuid()).encode() + b" got " + event
"""


@pytest.fixture
def container_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    need_node()
    require_containers()
    gw = GatewayProcess(tmp_path / "data", isolation="container").start()
    yield gw
    gw.stop()


def test_node_function_runs_in_a_container_and_talks_to_a_python_one(container_gateway: GatewayProcess) -> None:
    gw = container_gateway
    gw.deploy({"functions": [entry("node-inside", memory_mb=128, timeout_s=10), fn("py-inside")]},
              {"node-inside": js(INSIDE), "py-inside": PY_INSIDE})  # fmt: skip
    response = gw.invoke("node-inside")
    assert response.status_code == 200, response.text
    body = response.json()
    assert gw.status("node-inside")["isolation"] == "container"
    assert body == {"uid": 65534, "hostname": "node-inside", "cwd": "/code", "codeWritable": False,
                    "python": "python 65534 got from node", "shim": "function", "heap": "--max-old-space-size=128"}  # fmt: skip
