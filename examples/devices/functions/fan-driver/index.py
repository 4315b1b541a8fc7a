"""A simulated fan driver (native edgefc driver API): properties ``on`` (bool) and ``speed`` (0..3).

A set reaches ``on_set``; the fan checks it, refuses what it cannot do with a code and a message, and reports
its new state, so that ``edgefc devices list`` shows it.
"""

import threading

import edgefc.sdk as fc

NO_SUCH_PROPERTY = 109002
INVALID_PARAM = 100001


class Fan:
    def __init__(self, info):
        self.state = {"on": False, "speed": int((info.config or {}).get("speed", 1))}
        self.lock = threading.Lock()
        self.client = fc.driver.ThingClient(info.product_key, info.device_name, on_get=self.get, on_set=self.set,
                                            on_service=self.service)

    def get(self, keys):
        with self.lock:
            return {k: v for k, v in self.state.items() if not keys or k in keys}

    def set(self, properties):
        for name, value in properties.items():
            if name not in self.state:
                raise fc.driver.DeviceError(NO_SUCH_PROPERTY, f"a fan has no property {name!r}")
            if name == "on" and not isinstance(value, bool):
                raise fc.driver.DeviceError(INVALID_PARAM, f"on must be true or false, got {value!r}")
            if name == "speed" and (not isinstance(value, int) or not 0 <= value <= 3):
                raise fc.driver.DeviceError(INVALID_PARAM, f"speed must be 0..3, got {value!r}")
        with self.lock:
            self.state.update(properties)
            state = dict(self.state)
        self.client.report_properties(state)
        return state

    def service(self, name, args):
        if name != "toggle":
            raise fc.driver.DeviceError(109005, f"a fan has no service {name!r}")
        with self.lock:
            on = not self.state["on"]
        return self.set({"on": on})


def init(context):
    for info in fc.driver.devices():
        fan = Fan(info)
        fan.client.register_and_online()
        fan.client.report_properties(fan.get([]))


def handler(event, context):
    return {"devices": [d.device_name for d in fc.driver.devices()]}
