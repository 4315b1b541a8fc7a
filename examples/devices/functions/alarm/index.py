"""The alarm application: property reports of the sensors (routed here) turn the fan on when it is too hot.

Config: ``threshold`` (°C, default 30) and ``fan`` (``{"product_key", "device_name"}``).
"""

import json

import edgefc.sdk as fc


def handler(event, context):
    message = json.loads(event)
    reading = json.loads(message["payload"]).get("temperature")
    if reading is None:
        return {"skipped": "no temperature in this report"}
    config = fc.config() or {}
    threshold = float(config.get("threshold", 30))
    fan = config.get("fan") or {"product_key": "pk2", "device_name": "fan-1"}
    sensor = message["source"]["id"]
    if reading["value"] <= threshold:
        return {"sensor": sensor, "temperature": reading["value"], "fan": "unchanged"}
    context.logger.warning("%s reads %.1f °C (over %.1f): fan on", sensor, reading["value"], threshold)
    answer = fc.things.set_properties(fan["product_key"], fan["device_name"], {"on": True})
    return {"sensor": sensor, "temperature": reading["value"], "fan": answer}
