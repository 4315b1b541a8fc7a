# -*- coding: utf-8 -*-
# A Link IoT Edge application written against lecoresdk only: light sensor reports are routed here; when it
# gets dark, it switches on the lamps (devices tagged kind=lamp) and publishes an alert.
import json
import logging

import lecoresdk

iot_data = lecoresdk.IoTData()
DARK = 150


def handler(event, context):
    evt = json.loads(event)
    # "/sys/{productKey}/{deviceName}/thing/event/property/post" -> "/{productKey}/{deviceName}"
    sensor = "/" + "/".join(evt.get("topic", "").split("/")[2:4])
    report = json.loads(evt["payload"])
    if "MeasuredIlluminance" not in report:
        return "ignored"
    illuminance = report["MeasuredIlluminance"]["value"]
    if illuminance > DARK:
        return json.dumps({"illuminance": illuminance, "lamps": []})
    lamps = iot_data.getThingsWithTags({"payload": [{"kind": "lamp"}]})
    for lamp in lamps:
        iot_data.setThingProperties(
            {"productKey": lamp["productKey"], "deviceName": lamp["deviceName"], "payload": {"LightSwitch": 1}})
    iot_data.publish({"topic": "/alerts/light", "payload": json.dumps({"sensor": sensor, "illuminance": illuminance})})
    logging.info("dark at %s (%s lx): %d lamp(s) on", sensor, illuminance, len(lamps))
    return json.dumps({"illuminance": illuminance, "lamps": [lamp["deviceName"] for lamp in lamps]})
