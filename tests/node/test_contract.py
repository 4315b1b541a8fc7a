"""The handler contract of Node.js functions (CONTRACT §1 as Node.js code sees it), on a real gateway and node."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.gateway_harness import GatewayProcess
from tests.node.conftest import deploy_once, entry, js, logs_of

CALLBACK = """
exports.handler = function (event, context, callback) {
  console.log('event is', Buffer.isBuffer(event) ? 'a Buffer' : typeof event);
  console.error('to stderr');
  context.logger.warn('careful');
  process.stdout.write('partial ');
  process.stdout.write('line\\n');
  callback(null, {
    event: event.toString('utf8'), requestId: context.requestId, fn: context.function,
    trigger: context.trigger, left: context.getRemainingTimeInMillis(),
  });
};
"""

KINDS = """
exports.handler = async (event, context) => {
  const kind = event.toString();
  if (kind === 'buffer') return Buffer.from([0, 1, 2, 255]);
  if (kind === 'bytes') return new Uint8Array([7, 8]);
  if (kind === 'string') return 'héllo';
  if (kind === 'null') return null;
  if (kind === 'json') return {a: [1, 2], b: 'x'};
  if (kind === 'number') return 42;
  if (kind === 'circular') { const o = {}; o.self = o; return o; }
  if (kind === 'reject') return Promise.reject(new RangeError('out of range'));
  throw new TypeError('bad kind ' + kind);
};
"""

# A subprocess writing straight to the fds it inherits: its lines are the function's log entries too.
CHILD = """
const { spawnSync } = require('child_process');
exports.handler = (event, context, callback) => {
  spawnSync('sh', ['-c', 'echo from the child; echo child complains >&2'], {stdio: 'inherit'});
  callback(null, context.requestId);
};
"""

SYNC = "exports.handler = (event, context) => 'sync:' + event.toString();\n"

CALLBACK_ERROR = """
exports.handler = (event, context, callback) => {
  if (event.toString() === 'string') return callback('plain text failure');
  callback(new Error('called back with an error'));
};
"""


def _deploy(gw: GatewayProcess) -> None:
    deploy_once(
        gw,
        {"version": "contract-1",
         "functions": [entry("cb", memory_mb=128, timeout_s=5), entry("kinds"), entry("sync"), entry("cberr"),
                       entry("esm"), entry("echo"), entry("child")]},
        {"cb": js(CALLBACK), "kinds": js(KINDS), "sync": js(SYNC), "cberr": js(CALLBACK_ERROR),
         "echo": js("exports.handler = async (event) => event;\n"),
         "child": js(CHILD),
         "esm": {"index.mjs": "import os from 'node:os';\nexport const handler = async (event) => `esm:${event}:${typeof os.hostname}`;\n"}},
    )


def test_callback_handler_gets_a_buffer_and_its_context(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    response = gw.invoke("cb", b"world")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event"] == "world"
    assert body["fn"] == {"name": "cb", "handler": "index.handler", "memory": 128, "timeout": 5, "version": body["fn"]["version"],
                          "initializer": None}  # fmt: skip
    assert body["trigger"]["type"] == "invoke"
    assert 4000 < body["left"] <= 5000
    rid = body["requestId"]

    def four_lines() -> list[dict[str, object]] | None:
        found = logs_of(gw, "cb", request_id=rid)
        return found if len(found) >= 4 else None

    entries = gw.wait_for(four_lines, what="the four log lines of the event")
    seen = {(e["message"], e["level"]) for e in entries}
    assert ("event is a Buffer", "info") in seen
    assert ("to stderr", "error") in seen
    assert ("careful", "warning") in seen
    assert ("partial line", "info") in seen
    assert all(e["request_id"] == rid for e in entries)


def test_results_of_every_kind(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    expected = {b"buffer": b"\x00\x01\x02\xff", b"bytes": b"\x07\x08", b"string": "héllo".encode(), b"null": b"",
                b"json": b'{"a":[1,2],"b":"x"}', b"number": b"42"}  # fmt: skip
    for event, result in expected.items():
        response = gw.invoke("kinds", event)
        assert (response.status_code, response.content) == (200, result), event
    assert gw.invoke("sync", b"abc").content == b"sync:abc"
    assert gw.invoke("esm", b"m").content == b"esm:m:function"  # an ES module (index.mjs) is imported
    big = os.urandom(3 * 1024 * 1024)  # many socket reads each way: frames split across chunks
    assert gw.invoke("echo", big).content == big


def test_errors_carry_message_and_the_users_stack(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    response = gw.invoke("kinds", b"nope")
    assert response.status_code == 502
    assert response.headers["X-Edgefc-Error-Type"] == "Handled"
    error = response.json()["error"]
    assert error["message"] == "TypeError: bad kind nope"
    assert any("index.js:" in line for line in error["stack"]), error["stack"]
    assert not any("worker.js" in line or "node:internal" in line for line in error["stack"]), error["stack"]

    rejected = gw.invoke("kinds", b"reject").json()["error"]
    assert rejected["message"] == "RangeError: out of range"
    circular = gw.invoke("kinds", b"circular").json()["error"]
    assert "not a Buffer, string or JSON" in circular["message"]

    called_back = gw.invoke("cberr", b"")
    assert called_back.status_code == 502 and called_back.json()["error"]["message"] == "Error: called back with an error"
    assert gw.invoke("cberr", b"string").json()["error"]["message"] == "plain text failure"
    # The traceback is logged too, as one error entry.
    errors = gw.wait_for(lambda: [e for e in logs_of(gw, "kinds", level="error") if "bad kind nope" in str(e["message"])],
                         what="the logged stack")  # fmt: skip
    assert "index.js" in str(errors[0]["message"])
    assert json.loads(gw.invoke("kinds", b"json").content) == {"a": [1, 2], "b": "x"}  # the instance lives on


def test_init_scaffolds_a_node_function_that_deploys_and_answers(node_gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = node_gateway
    made = gw.cli("init", "greeter", "--dir", str(tmp_path), "--runtime", "nodejs20")
    assert made.returncode == 0, made.stderr.decode()
    assert (tmp_path / "functions" / "greeter" / "index.js").is_file()
    deployed = gw.cli("deploy", "--yes", str(tmp_path / "deployment.yaml"))  # replaces the module's other functions
    assert deployed.returncode == 0, deployed.stderr.decode()
    assert gw.invoke("greeter", b'{"name": "edge"}').json() == {"hello": "edge"}
    refused = gw.cli("init", "other", "--dir", str(tmp_path), "--runtime", "nodejs8")
    assert refused.returncode == 2 and b"nodejs8" in refused.stderr


def test_output_of_subprocesses_is_captured_as_log_lines(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    rid = gw.invoke("child").text
    entries = gw.wait_for(lambda: found if len(found := logs_of(gw, "child")) >= 2 else None, what="both lines")
    assert {(e["message"], e["level"], e["stream"]) for e in entries} == {
        ("from the child", "info", "stdout"), ("child complains", "warning", "stderr")}
    assert all(e["request_id"] == rid for e in entries), entries
