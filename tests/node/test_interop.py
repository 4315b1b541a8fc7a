"""Node.js and Python functions on one gateway: invoking each other through the SDKs and sharing routes."""

from __future__ import annotations

import json

from tests.e2e.gateway_harness import GatewayProcess, fn
from tests.node.conftest import deploy_once, entry, js

NODE_CALLER = """
const fc = require('edgefc');
exports.handler = async (event, context) => {
  const request = JSON.parse(event.toString());
  if (request.op === 'invoke') {
    const result = await fc.invoke(request.name, request.payload);
    return {result: result.toString(), isBuffer: Buffer.isBuffer(result)};
  }
  if (request.op === 'fail') {
    try { await fc.invoke(request.name, request.payload); } catch (err) {
      return {name: err.name, type: err.type, message: err.remoteMessage};
    }
  }
  if (request.op === 'async') return {id: await fc.invoke(request.name, 'x', {type: 'async'})};
  await fc.publish(request.topic, request.payload, {qos: request.qos || 0});
  return 'published';
};
"""

NODE_SINK = """
const seen = [];
exports.handler = (event, context, callback) => {
  if (context.trigger.type === 'message') {
    seen.push({event: JSON.parse(event.toString()), topic: context.trigger.topic, source: context.trigger.source});
  }
  callback(null, seen);
};
"""

PY_CALLER = """
import edgefc.sdk as fc

def handler(event, context):
    return b"py got " + fc.invoke("node-caller", event)
"""

PY_ECHO = """
def handler(event, context):
    if event == b"boom":
        raise ValueError("python says no")
    return b"py:" + event
"""

PY_SINK = """
import json
SEEN = []

def handler(event, context):
    if context.trigger.type == "message":
        SEEN.append({"event": json.loads(event), "topic": context.trigger.topic})
    return SEEN
"""


def _deploy(gw: GatewayProcess) -> None:
    deploy_once(
        gw,
        {
            "version": "interop-1",
            "functions": [entry("node-caller", timeout_s=10), entry("node-sink"), fn("py-echo"),
                          fn("py-caller", timeout_s=10), fn("py-sink")],
            "routes": [
                {"name": "node-to-py", "source": "function:node-caller", "topic": "from/node/#", "target": "function:py-sink"},
                {"name": "shared-node", "source": "api", "topic": "shared/#", "target": "function:node-sink"},
                {"name": "shared-py", "source": "api", "topic": "shared/#", "target": "function:py-sink"},
            ],
        },
        {"node-caller": js(NODE_CALLER), "node-sink": js(NODE_SINK), "py-echo": PY_ECHO, "py-caller": PY_CALLER,
         "py-sink": PY_SINK},
    )


def test_node_and_python_invoke_each_other(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    answer = gw.invoke("node-caller", json.dumps({"op": "invoke", "name": "py-echo", "payload": "hello"}).encode())
    assert answer.json() == {"result": "py:hello", "isBuffer": True}
    # Python → Node → Python: two hops through both SDKs.
    nested = json.dumps({"op": "invoke", "name": "py-echo", "payload": "deep"}).encode()
    assert gw.invoke("py-caller", nested).content == b'py got {"result":"py:deep","isBuffer":true}'
    failed = gw.invoke("node-caller", json.dumps({"op": "fail", "name": "py-echo", "payload": "boom"}).encode()).json()
    assert failed == {"name": "FunctionError", "type": "Handled", "message": "ValueError: python says no"}
    missing = gw.invoke("node-caller", json.dumps({"op": "fail", "name": "nobody", "payload": ""}).encode()).json()
    assert missing["type"] == "NotFound"
    started = gw.invoke("node-caller", json.dumps({"op": "async", "name": "node-sink"}).encode()).json()
    assert gw.client is not None
    gw.wait_for(lambda: gw.client.get(f"/v1/invocations/{started['id']}").json()["state"] == "succeeded",  # type: ignore[union-attr]
                what="the async invocation to finish")  # fmt: skip


def test_node_and_python_share_routes(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    published = gw.invoke("node-caller", json.dumps({"op": "publish", "topic": "from/node/temp", "payload": {"c": 21}, "qos": 1}).encode())
    assert published.content == b"published"
    got = gw.wait_for(lambda: json.loads(gw.invoke("py-sink").content) or None, what="python to receive node's message")
    assert got[0]["topic"] == "from/node/temp"
    assert got[0]["event"]["source"] == {"type": "function", "id": "node-caller"}
    assert json.loads(got[0]["event"]["payload"]) == {"c": 21}
    assert gw.client is not None
    response = gw.client.post("/v1/messages", json={"topic": "shared/alarm", "payload": "both", "qos": 0})
    assert response.status_code in (200, 202), response.text
    node_seen = gw.wait_for(lambda: json.loads(gw.invoke("node-sink").content) or None, what="node to receive the shared message")
    assert node_seen[0]["event"]["payload"] == "both" and node_seen[0]["topic"] == "shared/alarm"
    py_seen = gw.wait_for(lambda: [m for m in json.loads(gw.invoke("py-sink").content) if m["topic"] == "shared/alarm"],
                          what="python to receive the shared message")  # fmt: skip
    assert py_seen[0]["event"]["payload"] == "both"
