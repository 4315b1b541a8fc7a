"""Initializer, continuous mode with a module body that keeps running, memory limits, env and timers."""

from __future__ import annotations

import json
import socket

from tests.e2e.gateway_harness import GatewayProcess
from tests.node.conftest import entry, js

STATEFUL = """
let ready = null;
let count = 0;
exports.init = (context, callback) => {
  setTimeout(() => { ready = {by: context.requestId, fn: context.function.name}; callback(); }, 10);
};
exports.handler = async (event, context) => ({ready, count: ++count, env: process.env.GREETING,
  secret: process.env.EDGEFC_WORKER_KEY ?? null, cwd: process.cwd()});
"""

# A module body that keeps running: a timer counting and a TCP server answering on a port it picked.
SERVER = """
const net = require('net');
let ticks = 0;
setInterval(() => { ticks += 1; }, 10);
const server = net.createServer((conn) => conn.end(`ticks ${ticks}\\n`));
server.listen(0, '127.0.0.1');
exports.handler = (event, context, callback) => callback(null, {port: server.address().port, ticks});
"""

HOG = """
const kept = [];
exports.handler = async (event) => {
  const kind = event.toString();
  for (let i = 0; i < 10000; i++) {
    if (kind === 'heap') kept.push(new Array(1e5).fill(i));
    else kept.push(Buffer.alloc(8 * 1024 * 1024, 1));
    await new Promise((resolve) => setImmediate(resolve));
  }
  return 'survived';
};
"""


def test_initializer_runs_once_before_the_first_event(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"functions": [entry("stateful", initializer="index.init", env={"GREETING": "hi"})]}, {"stateful": js(STATEFUL)})
    first = gw.invoke("stateful").json()
    assert first["ready"] == {"by": "init", "fn": "stateful"}
    assert first["env"] == "hi" and first["secret"] is None
    assert "/code/" in first["cwd"]
    assert gw.invoke("stateful").json()["count"] == 2


def test_a_continuous_module_keeps_its_timers_and_server_running(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"functions": [entry("server", mode="continuous")]}, {"server": js(SERVER)})
    assert gw.status("server")["state"] == "running"
    port = gw.invoke("server").json()["port"]

    def ticks() -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            return int(conn.makefile().readline().split()[1])

    seen = ticks()
    gw.wait_for(lambda: ticks() > seen, what="the module's timer to keep ticking between events")


def test_memory_limit_ends_a_function_as_out_of_memory(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"functions": [entry("hog", memory_mb=96, timeout_s=20), entry("bystander")]},
              {"hog": js(HOG), "bystander": js("exports.handler = async () => 'fine';\n")})  # fmt: skip
    for kind in (b"buffers", b"heap"):
        response = gw.invoke("hog", kind)
        assert response.status_code == 502, response.text
        assert response.headers["X-Edgefc-Error-Type"] == "OutOfMemory", (kind, response.text)
    assert gw.invoke("bystander").content == b"fine"
    assert json.loads(gw.client.get("/v1/functions/hog").text)["last_exit"]  # type: ignore[union-attr]
