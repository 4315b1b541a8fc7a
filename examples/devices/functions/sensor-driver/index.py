"""A simulated temperature sensor driver (native edgefc driver API).

Each device assigned to this driver in the manifest is a sensor whose temperature starts at its config's
``start`` and wanders by up to ``drift`` per reading; the driver reports it every ``period_s`` (driver config,
default 1 s). Applications can read it (``get``) and, to simulate a heat wave, set it (``set``).
"""

import logging
import random
import threading

import edgefc.sdk as fc

log = logging.getLogger("sensor-driver")
READ_ONLY = 109003
NO_SUCH_PROPERTY = 109002
INVALID_PARAM = 100001


class Sensor:
    def __init__(self, info, period):
        config = info.config or {}
        self.temperature = float(config.get("start", 20.0))
        self.drift = float(config.get("drift", 0.3))
        self.period = period
        self.lock = threading.Lock()
        self.client = fc.driver.ThingClient(info.product_key, info.device_name, on_get=self.get, on_set=self.set)

    def get(self, keys):
        with self.lock:
            values = {"temperature": round(self.temperature, 2), "unit": "°C"}
        unknown = [k for k in keys if k not in values]
        if unknown:
            raise fc.driver.DeviceError(NO_SUCH_PROPERTY, f"no property {unknown[0]!r}")
        return {k: values[k] for k in keys} if keys else values

    def set(self, properties):
        for name, value in properties.items():
            if name == "unit":
                raise fc.driver.DeviceError(READ_ONLY, "unit is read-only")
            if name != "temperature":
                raise fc.driver.DeviceError(NO_SUCH_PROPERTY, f"no property {name!r}")
            if not isinstance(value, int | float):
                raise fc.driver.DeviceError(INVALID_PARAM, f"temperature must be a number, got {value!r}")
        with self.lock:
            self.temperature = float(properties["temperature"])
        return {"temperature": self.temperature}

    def run(self):
        stop = threading.Event()
        while not stop.wait(self.period):
            with self.lock:
                self.temperature += random.uniform(-self.drift, self.drift)
                reading = round(self.temperature, 2)
            try:
                self.client.report_properties({"temperature": reading})
            except fc.things.ThingError as exc:  # e.g. offline: keep measuring, report again later
                log.warning("report of %s failed: %s", self.client, exc)


def init(context):
    period = float((fc.config() or {}).get("period_s", 1.0))
    for info in fc.driver.devices():
        sensor = Sensor(info, period)
        sensor.client.register_and_online()
        sensor.client.report_properties({"temperature": round(sensor.temperature, 2), "unit": "°C"})
        threading.Thread(target=sensor.run, name=f"sensor-{info.device_name}", daemon=True).start()
        log.info("sensor %s/%s online", info.product_key, info.device_name)


def handler(event, context):
    return {"devices": [d.device_name for d in fc.driver.devices()]}
