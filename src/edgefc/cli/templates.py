"""The starting points ``edgefc init --template`` writes: code files and the function's manifest settings.

Templates are registered per runtime (``RUNTIMES``); a runtime adds its own table, and ``edgefc init
--runtime`` offers every runtime registered here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgefc import node as nodejs
from edgefc.node.templates import TEMPLATES as NODE_TEMPLATES


@dataclass(frozen=True)
class Template:
    """Files (``{path: text}``, ``{name}`` replaced) and manifest settings of a new function, and what to do next."""

    files: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    next_step: str = "edgefc invoke {name} --data '{{\"name\":\"edge\"}}'"


ON_DEMAND = '''"""{name}: an on-demand function, started at its first event and stopped when idle."""

import json


def handler(event, context):
    """Called once per event; event is bytes, the return value is the result."""
    data = json.loads(event or b"{{}}")
    context.logger.info("hello from %s", context.function.name)
    return {{"hello": data.get("name", "world")}}
'''

CONTINUOUS = '''"""{name}: a continuous function, started at deploy and restarted whenever it exits."""

import threading
import time

state = {{"ticks": 0, "started": time.time()}}


def _work():
    while True:
        state["ticks"] += 1  # the long-running work goes here (poll a sensor, keep a connection open, ...)
        time.sleep(1)


def init(context):
    """Runs once when the instance starts, before any event."""
    threading.Thread(target=_work, name="work", daemon=True).start()


def handler(event, context):
    """Events still arrive (invoke, routes, timers); this one reports how long it has been running."""
    return {{"ticks": state["ticks"], "up_s": round(time.time() - state["started"], 1)}}
'''

DRIVER = '''"""{name}: a device driver. It serves the devices the manifest assigns to it (devices: ... driver: {name}).

Each device reports a "value" property every few seconds; edgefc devices get/set reach on_get/on_set.
"""

import random
import threading
import time

import edgefc.sdk as fc

devices = {{}}


class Device:
    def __init__(self, info):
        self.values = {{"value": float((info.config or {{}}).get("start", 20.0))}}
        self.client = fc.driver.ThingClient(info.product_key, info.device_name, on_get=self.get, on_set=self.set)

    def get(self, keys):
        return {{k: v for k, v in self.values.items() if not keys or k in keys}}

    def set(self, properties):
        self.values.update(properties)
        self.client.report_properties(self.values)
        return self.values


def _report():
    while True:
        for device in devices.values():
            device.values["value"] = round(device.values["value"] + random.uniform(-0.5, 0.5), 2)
            device.client.report_properties(device.values)
        time.sleep(5)


def init(context):
    for info in fc.driver.devices():
        device = Device(info)
        device.client.register_and_online()
        devices[info.device_name] = device
    threading.Thread(target=_report, name="report", daemon=True).start()


def handler(event, context):
    return {{"devices": sorted(devices)}}
'''

APP = '''"""{name}: application logic. Route messages to it (routes: ... target: "function:{name}"); it decides and
publishes what to do on MQTT through the gateway's router.
"""

import json

import edgefc.sdk as fc


def handler(event, context):
    """A routed message arrives as JSON: {{"topic", "payload", "source"}}; a direct invoke as its own bytes."""
    message = json.loads(event or b"{{}}")
    payload = message.get("payload", message)
    context.logger.info("message on %s", message.get("topic", "(invoke)"))
    decision = {{"seen": payload, "by": context.function.name}}
    fc.publish("app/{name}/out", json.dumps(decision))
    return decision
'''

HTTP = '''"""{name}: a small HTTP service, kept running by the gateway, listening on $PORT (set in the manifest).

In a container (isolation: container) add a port mapping to reach it from the host:
container: {{ports: ["8080:8080/tcp"]}}.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"hello": "from {name}", "path": self.path}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass  # one line per request would flood the function's log


def init(context):
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    context.logger.info("listening on port %s", server.server_address[1])


def handler(event, context):
    return {{"port": int(os.environ.get("PORT", "8080"))}}
'''

TIMER = '''"""{name}: runs on a schedule (schedule: in the manifest); the event says when and why it fired."""

import json


def handler(event, context):
    """A timer event: {{"triggerTime": RFC 3339, "triggerName": ..., "payload": schedule_payload}}."""
    fired = json.loads(event or b"{{}}")
    context.logger.info("fired at %s with %s", fired.get("triggerTime"), fired.get("payload"))
    return {{"fired": fired.get("triggerTime"), "payload": fired.get("payload")}}
'''

PYTHON: dict[str, Template] = {
    "on-demand": Template({"index.py": ON_DEMAND}, {"mode": "on_demand", "memory_mb": 128, "timeout_s": 3}),
    "continuous": Template({"index.py": CONTINUOUS}, {"initializer": "index.init", "mode": "continuous",
                                                      "memory_mb": 128}, "edgefc invoke {name}"),  # fmt: skip
    "driver": Template({"index.py": DRIVER}, {"initializer": "index.init", "mode": "continuous", "memory_mb": 64},
                       "add its devices to the manifest (devices: - {{product_key: pk, device_name: d1, "
                       "driver: {name}}}), deploy, then edgefc devices list"),  # fmt: skip
    "app": Template({"index.py": APP}, {"mode": "on_demand", "memory_mb": 128, "timeout_s": 3},
                    "edgefc invoke {name} --data '{{\"payload\":{{\"t\":31}}}}'"),  # fmt: skip
    "http": Template({"index.py": HTTP}, {"initializer": "index.init", "mode": "continuous", "memory_mb": 128,
                                          "env": {"PORT": "8080"}}, "curl http://127.0.0.1:8080/"),  # fmt: skip
    "timer": Template({"index.py": TIMER}, {"mode": "on_demand", "memory_mb": 64, "timeout_s": 10,
                                            "schedule": "@every 1m", "schedule_payload": {"task": "tick"}},
                      "edgefc logs {name} -f"),  # fmt: skip
}

# Node.js (docs/nodejs.md): the node package's own table, in this table's shape.
NODE: dict[str, Template] = {kind: Template(*entry) for kind, entry in NODE_TEMPLATES.items()}

# runtime → its templates.
RUNTIMES: dict[str, dict[str, Template]] = {"python3": PYTHON, **{runtime: NODE for runtime in nodejs.RUNTIMES}}
