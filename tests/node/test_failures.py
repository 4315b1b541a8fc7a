"""Bad Node.js code: each failure is a clear error naming the function, and nothing else is affected."""

from __future__ import annotations

import yaml

from edgefc.package import zip_directory
from tests.e2e.gateway_harness import GatewayProcess
from tests.node.conftest import deploy_once, entry, js, logs_of

HEALTHY = "exports.handler = (event, context, callback) => callback(null, 'still here');\n"

ASYNC_THROW = """
exports.handler = (event, context, callback) => {
  if (event.toString() === 'ok') return callback(null, 'fine');
  setTimeout(() => { throw new Error('async boom'); }, 5);
};
"""

NEVER = """
exports.handler = (event, context, callback) => {
  if (event.toString() === 'answer') callback(null, 'answered');
};
"""

TWICE = """
exports.handler = (event, context, callback) => {
  callback(null, 'first');
  callback(null, 'second');
};
"""

BUSY = """
exports.handler = (event, context, callback) => {
  if (event.toString() === 'ok') return callback(null, 'ok');
  for (;;) {}
};
"""

REJECTED = """
exports.handler = async (event) => {
  if (event.toString() === 'ok') return 'ok';
  Promise.reject(new Error('nobody catches me'));
  await new Promise((resolve) => setTimeout(resolve, 1000));
};
"""


def _deploy(gw: GatewayProcess) -> None:
    deploy_once(
        gw,
        {"version": "failures-1",
         "functions": [entry("healthy"), entry("asyncthrow"), entry("never", timeout_s=1), entry("twice"),
                       entry("busy", timeout_s=1), entry("rejected")]},  # fmt: skip
        {"healthy": js(HEALTHY), "asyncthrow": js(ASYNC_THROW), "never": js(NEVER), "twice": js(TWICE),
         "busy": js(BUSY), "rejected": js(REJECTED)},  # fmt: skip
    )


def test_asynchronous_throw_fails_the_event_naming_the_function(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    for name, needle in (("asyncthrow", "async boom"), ("rejected", "nobody catches me")):
        response = gw.invoke(name, b"")
        assert response.status_code == 502, response.text
        assert response.headers["X-Edgefc-Error-Type"] == "Handled"
        error = response.json()["error"]
        assert f"function '{name}'" in error["message"] and needle in error["message"], error
        assert any("index.js" in line for line in error["stack"])
        # The exception belonged to that event alone: the same instance serves the next one.
        again = gw.invoke(name, b"ok")
        assert again.status_code == 200, again.text
        assert gw.status(name)["cold_starts"] == 1
    assert gw.invoke("healthy").content == b"still here"


def test_an_uncaught_exception_outside_any_event_restarts_the_instance(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    source = """
    let armed = false;
    setInterval(() => { if (armed) throw new Error('module timer broke'); }, 20);
    exports.handler = (event, context, callback) => {
      if (event.toString() === 'arm') armed = true;
      callback(null, String(process.pid));
    };
    """
    gw.deploy({"functions": [entry("ticking", mode="continuous"), entry("healthy")]},
              {"ticking": js(source), "healthy": js(HEALTHY)})  # fmt: skip
    first = gw.invoke("ticking", b"").content
    gw.invoke("ticking", b"arm")
    gw.wait_for(lambda: gw.status("ticking")["restarts"] >= 1, what="the continuous function to restart")
    restarted = gw.wait_for(lambda: (r := gw.invoke("ticking", b"")).status_code == 200 and r.content, what="a new instance")
    assert restarted != first
    logged = gw.wait_for(lambda: [e for e in logs_of(gw, "ticking", level="error") if "module timer broke" in str(e["message"])],
                         what="the logged exception")  # fmt: skip
    assert "function 'ticking'" in str(logged[0]["message"]) and "outside any event" in str(logged[0]["message"])


def test_a_handler_that_never_calls_back_times_out_and_keeps_its_instance(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    response = gw.invoke("never", b"")
    assert response.status_code == 504
    assert response.headers["X-Edgefc-Error-Type"] == "Timeout"
    assert "function 'never'" in response.json()["error"]["message"]
    assert gw.invoke("never", b"answer").content == b"answered"
    status = gw.status("never")
    assert status["cold_starts"] == 1 and status["timeouts"] == 1, status


def test_a_busy_handler_is_killed_at_its_timeout(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    response = gw.invoke("busy", b"")
    assert response.status_code == 504 and response.headers["X-Edgefc-Error-Type"] == "Timeout"
    assert gw.invoke("busy", b"ok").content == b"ok"
    assert gw.status("busy")["cold_starts"] == 2
    assert gw.invoke("healthy").content == b"still here"


def test_calling_back_twice_keeps_the_first_answer_and_says_so(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    response = gw.invoke("twice", b"")
    assert (response.status_code, response.content) == (200, b"first")
    warnings = gw.wait_for(lambda: [e for e in logs_of(gw, "twice", level="warning") if "again" in str(e["message"])],
                           what="the warning about the second answer")  # fmt: skip
    assert "function 'twice'" in str(warnings[0]["message"])
    assert gw.invoke("twice", b"").content == b"first"


def _put(gw: GatewayProcess, name: str, source: str, **settings: object) -> tuple[int, str]:
    folder = gw.data_dir.parent / "bad" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.js").write_text(source)
    manifest = {"functions": [entry(name, **settings), entry("healthy")]}
    files = [("manifest", ("deployment.yaml", yaml.safe_dump(manifest).encode(), "application/yaml")),
             (name, (f"{name}.zip", zip_directory(folder, max_bytes=10**6, max_files=10, label=name), "application/zip")),
             ("healthy", ("healthy.zip", _zip_of(gw, "healthy", HEALTHY), "application/zip"))]  # fmt: skip
    assert gw.client is not None
    response = gw.client.put("/v1/deployment", files=files)
    return response.status_code, response.text


def _zip_of(gw: GatewayProcess, name: str, source: str) -> bytes:
    folder = gw.data_dir.parent / "good" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.js").write_text(source)
    return zip_directory(folder, max_bytes=10**6, max_files=10, label=name)


def test_bad_modules_are_refused_naming_the_function_and_change_nothing(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    _deploy(gw)
    assert gw.client is not None
    before = gw.client.get("/v1/deployment").json()["version"]
    cases = {
        "noexport": ("exports.other = () => 1;\n", {}, ["function 'noexport'", "index.js does not export 'handler'", "other"]),
        "syntax": ("exports.handler = (e, c, cb) => { cb(null, 1);\n", {}, ["functions[0].handler", "index.js", "SyntaxError"]),
        "missing": ("require('no-such-package');\nexports.handler = () => 1;\n", {},
                    ["function 'missing'", "Cannot find module 'no-such-package'"]),
        "nofile": ("exports.handler = () => 1;\n", {"handler": "main.handler"}, ["functions[0].handler", "main.js"]),
        "initfails": ("exports.handler = () => 1;\nexports.init = async () => { throw new Error('no db'); };\n",
                      {"initializer": "index.init"}, ["function 'initfails'", "initializer", "no db"]),
        "tiny": ("exports.handler = () => 1;\n", {"memory_mb": 32}, ["functions[0].memory_mb", "at least 64"]),
    }  # fmt: skip
    for name, (source, settings, needles) in cases.items():
        status, text = _put(gw, name, source, **settings)
        assert status == 422, (name, text)
        for needle in needles:
            assert needle in text, (name, needle, text)
    assert gw.client.get("/v1/deployment").json()["version"] == before
    assert gw.invoke("healthy").content == b"still here"
    assert gw.invoke("twice").content == b"first"


FLOOD = """
exports.handler = (event, context, callback) => {
  const line = 'x'.repeat(200);
  for (let i = 0; i < 250000; i++) console.log(line);  // 50 MB of lines in one synchronous burst
  callback(null, 'flooded');
};
"""


def test_a_log_flood_is_cut_not_held_in_the_workers_memory(node_gateway: GatewayProcess) -> None:
    gw = node_gateway
    gw.deploy({"version": "flood-1", "functions": [entry("flood", memory_mb=96, timeout_s=20), entry("healthy")]},
              {"flood": js(FLOOD), "healthy": js(HEALTHY)})  # fmt: skip
    response = gw.invoke("flood")
    assert (response.status_code, response.content) == (200, b"flooded"), response.text
    # Without the worker's backlog cap the queued lines alone would outgrow the 96 MB limit.
    assert gw.status("flood")["cold_starts"] == 1
    dropped = gw.wait_for(lambda: [e for e in logs_of(gw, "flood", level="warning", q="dropped")] or None,
                          what="a count of dropped lines")  # fmt: skip
    assert "dropped" in str(dropped[0]["message"])
    assert gw.invoke("healthy").content == b"still here"
