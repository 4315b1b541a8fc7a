# -*- coding: utf-8 -*-
# A Link IoT Edge light sensor and lamp driver, written against lethingaccesssdk only (the published
# LightSensor sample's style): it runs unchanged on Link IoT Edge and on edgefc. A device's custom config
# arrives as JSON text ({"kind": "lamp"} marks a lamp); the driver config sets the sensor's period.
import json
import logging
import time
from threading import Timer

import lethingaccesssdk


class Light_Sensor(object):
    def __init__(self, period):
        self._illuminance = 200
        self._delta = 100
        self._period = period
        self._callback = None

    @property
    def illuminance(self):
        return self._illuminance

    def start(self):
        if self._illuminance >= 600 or self._illuminance <= 100:
            self._delta = -self._delta
        self._illuminance += self._delta
        if self._callback is not None:
            data = {"properties": self._illuminance}
            self._callback(data)
            t = Timer(self._period, self.start, ())
            t.daemon = True
            t.start()

    def stop(self):
        self._callback = None

    def listen(self, callback):
        if callback is None:
            self.stop()
        else:
            self._callback = callback
            self.start()


class Connector(lethingaccesssdk.ThingCallback):
    def __init__(self, config, lightSensor):
        self.lightSensor = lightSensor
        self._client = lethingaccesssdk.ThingAccessClient(config)

    def listenCallback(self, data):
        try:
            self._client.reportProperties({"MeasuredIlluminance": data["properties"]})
        except Exception as e:
            logging.error(e)

    def connect(self):
        self._client.registerAndonline(self)
        self.lightSensor.listen(self.listenCallback)
        logging.info("Light Sensor connected")

    def disconnect(self):
        self.lightSensor.listen(None)
        self._client.offline()

    def callService(self, name, input_value):
        if name == "yourFunc":
            return 0, {}
        return 109005, {"message": "no service %s" % name}

    def getProperties(self, input_value):
        retDict = {}
        if "MeasuredIlluminance" in input_value:
            retDict["MeasuredIlluminance"] = self.lightSensor.illuminance
        return 0, retDict

    def setProperties(self, input_value):
        logging.error("can't set value")
        return 100001, {"message": "MeasuredIlluminance is read-only"}


class Lamp(lethingaccesssdk.ThingCallback):
    def __init__(self, config):
        self.switch = 0
        self._client = lethingaccesssdk.ThingAccessClient(config)

    def connect(self):
        if self._client.registerAndOnline(self):
            self._client.reportProperties({"LightSwitch": self.switch})

    def getProperties(self, input_value):
        return 0, {"LightSwitch": self.switch}

    def setProperties(self, input_value):
        if "LightSwitch" not in input_value or input_value["LightSwitch"] not in (0, 1):
            return 100001, {"message": "LightSwitch must be 0 or 1"}
        self.switch = input_value["LightSwitch"]
        self._client.reportProperties({"LightSwitch": self.switch})
        self._client.reportEvent("switched", {"LightSwitch": self.switch, "at": int(time.time())})
        return 0, {"LightSwitch": self.switch}

    def callService(self, name, input_value):
        return 109005, {}


driver_info = lethingaccesssdk.Config().getDriverInfo() or {}
if isinstance(driver_info, str):
    driver_info = json.loads(driver_info)
period = float(driver_info.get("period_s", 2))
infos = lethingaccesssdk.Config().getThingInfos()
for info in infos:
    print(info)
    try:
        custom = json.loads(info.get("custom") or "{}")
        if custom.get("kind") == "lamp":
            Lamp(info).connect()
        else:
            connector = Connector(info, Light_Sensor(period))
            connector.connect()
    except Exception as e:
        logging.error(e)


# don't remove this function
def handler(event, context):
    return "hello world"
