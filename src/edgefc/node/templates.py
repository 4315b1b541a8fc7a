"""Starting points for Node.js functions, as ``edgefc init --runtime nodejs20 [--template T]`` writes them.

Each template is ``(files, manifest settings, next step)``; texts are ``str.format`` templates with ``{name}``
(literal braces doubled), the shape of the CLI's own template table, which registers these for every Node.js
runtime (``RUNTIMES`` of this package).
"""

from __future__ import annotations

from typing import Any

ON_DEMAND = """'use strict';
// {name}: an on-demand Node.js function, started at its first event and stopped when idle (docs/nodejs.md).

exports.handler = (event, context, callback) => {{
  // Called once per event: `event` is a Buffer; answer with callback(err, result) or return a promise.
  const data = JSON.parse(event.toString() || '{{}}');
  context.logger.info(`hello from ${{context.function.name}}`);
  callback(null, {{ hello: data.name || 'world' }});
}};
"""

CONTINUOUS = """'use strict';
// {name}: a continuous Node.js function, started at deploy and restarted whenever it exits.

const state = {{ ticks: 0, started: Date.now() }};

// The module body keeps running between events: timers, servers, connections.
setInterval(() => {{ state.ticks += 1; }}, 1000);

exports.handler = async (event, context) => ({{ ticks: state.ticks, upS: (Date.now() - state.started) / 1000 }});
"""

DRIVER = """'use strict';
// {name}: a device driver on Link IoT Edge's thing access SDK. It serves the devices the manifest assigns to
// it (devices: ... driver: {name}): each reports a "value" property; edgefc devices get/set reach the callbacks.

const {{ RESULT_SUCCESS, ERROR_PROPERTY_NOT_EXIST, ERROR_SERVICE_NOT_EXIST, ThingAccessClient, getConfig }} =
  require('linkedge-thing-access-sdk');

getConfig().then((config) => config.getThingInfos().forEach((info) => {{
  const device = {{ value: 0 }};
  const client = new ThingAccessClient(info, {{
    getProperties: (keys) => keys.every((k) => k in device)
      ? {{ code: RESULT_SUCCESS, params: Object.fromEntries(keys.map((k) => [k, device[k]])) }}
      : {{ code: ERROR_PROPERTY_NOT_EXIST, message: `no such property in ${{keys}}` }},
    setProperties: (properties) => {{ Object.assign(device, properties); return {{ code: RESULT_SUCCESS }}; }},
    callService: (name) => ({{ code: ERROR_SERVICE_NOT_EXIST, message: `no service ${{name}}` }}),
  }});
  client.registerAndOnline().then(() => setInterval(() => {{
    device.value += 1;
    client.reportProperties({{ value: device.value }}).catch((err) => console.error(err.message));
  }}, 5000));
}})).catch((err) => console.error('driver start failed:', err.message));

exports.handler = (event, context, callback) => callback(null);
"""

APP = """'use strict';
// {name}: an application on Link IoT Edge's core SDK: it reads a device's properties through its driver.

const {{ IoTData }} = require('linkedge-core-sdk');

const iotData = new IoTData();

exports.handler = (event, context, callback) => {{
  const {{ productKey, deviceName }} = JSON.parse(event.toString() || '{{}}');
  iotData.getThingProperties({{ productKey, deviceName, payload: ['value'] }}, callback);
}};
"""

Template = tuple[dict[str, str], dict[str, Any], str]

TEMPLATES: dict[str, Template] = {
    "on-demand": ({"index.js": ON_DEMAND}, {"mode": "on_demand", "memory_mb": 128, "timeout_s": 3},
                  "edgefc invoke {name} --data '{{\"name\":\"edge\"}}'"),
    "continuous": ({"index.js": CONTINUOUS}, {"mode": "continuous", "memory_mb": 128}, "edgefc invoke {name}"),
    "driver": ({"index.js": DRIVER}, {"mode": "continuous", "memory_mb": 128},
               "add its devices to the manifest (devices: - {{product_key: pk, device_name: d1, driver: {name}}}), "
               "deploy, then edgefc devices list"),
    "app": ({"index.js": APP}, {"mode": "on_demand", "memory_mb": 128, "timeout_s": 5},
            "edgefc invoke {name} --data '{{\"productKey\":\"pk\",\"deviceName\":\"d1\"}}'"),
}  # fmt: skip
