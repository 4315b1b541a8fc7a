"""Initializer, continuous mode with a module body that keeps running, memory limits, env and timers."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.gateway_harness import GatewayProcess
from tests.node.conftest import entry, js, logs_of

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


TIMED = """
const fired = [];
exports.handler = (event, context, callback) => {
  if (context.trigger.type === 'timer') fired.push(JSON.parse(event.toString()));
  callback(null, fired);
};
"""

# Two events at once, each logging before and after an await: every line must carry its own event's id.
INTERLEAVED = """
exports.handler = async (event, context) => {
  const tag = event.toString();
  console.log(`start ${tag}`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  console.log(`end ${tag}`);
  return context.requestId;
};
"""


def test_a_timer_triggers_a_node_function_with_its_payload(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"functions": [entry("timed", schedule="@every 1s", schedule_payload={"zone": 3})]}, {"timed": js(TIMED)})
    fired = gw.wait_for(lambda: json.loads(gw.invoke("timed").content) or None, what="a timer event")
    assert fired[0]["payload"] == {"zone": 3} and fired[0]["triggerTime"].endswith("Z")


def test_log_lines_of_concurrent_events_keep_their_own_request_ids(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"functions": [entry("interleaved", max_concurrency=2)]}, {"interleaved": js(INTERLEAVED)})
    with ThreadPoolExecutor(2) as pool:
        ids = dict(zip("ab", pool.map(lambda tag: gw.invoke("interleaved", tag.encode()).text, "ab"), strict=True))
    assert ids["a"] != ids["b"]

    def lines() -> dict[str, str] | None:
        found = {str(e["message"]): str(e["request_id"]) for e in logs_of(gw, "interleaved")}
        return found if len(found) >= 4 else None

    found = gw.wait_for(lines, what="four log lines")
    assert found == {"start a": ids["a"], "end a": ids["a"], "start b": ids["b"], "end b": ids["b"]}
