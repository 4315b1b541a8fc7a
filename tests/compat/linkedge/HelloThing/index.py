# A thermometer driver in the style of the SDK's HelloThing: registration and a first report at import, then a
# polling loop at module level that never returns. Its handler (defined above the loop) runs client methods on
# request so that tests can see what each SDK call answers.
import json
import logging
import os
import time

import lethingaccesssdk
from leda_python import ledaException
from leda_python.ledaException import LedaException


class Thermometer(lethingaccesssdk.ThingCallback):
    def __init__(self):
        self.temperature = 20

    def getProperties(self, input_value):
        if "broken" in input_value:
            return 109002, {}
        if "weird" in input_value:
            return "no tuple here"
        if "raising" in input_value:
            raise ValueError("sensor bus error")
        return 0, {"temperature": self.temperature, "unit": "C"}

    def setProperties(self, input_value):
        self.temperature = input_value.get("temperature", self.temperature)
        return 0, {"this": "is not passed on"}

    def callService(self, name, input_value):
        if name == "reset":
            self.temperature = 20
            return 0, {"done": True, "level": input_value.get("level")}
        return ledaException.LEDA_ERROR_INVAILD_PARAM, {}


class Silent(lethingaccesssdk.ThingCallback):
    pass  # implements nothing


RESULTS = {}
infos = lethingaccesssdk.Config().getThingInfos()
RESULTS["infos"] = infos
RESULTS["driver_info"] = lethingaccesssdk.Config().getDriverInfo()
RESULTS["config"] = json.loads(lethingaccesssdk.getConfig())
RESULTS["env"] = {"FUNCTION_ID": os.environ.get("FUNCTION_ID"), "FC_DRIVER_CONFIG": json.loads(os.environ["FC_DRIVER_CONFIG"])}

# Calls before registration, and a client without a usable thing info, only log.
early = lethingaccesssdk.ThingAccessClient(infos[0])
early.reportProperties({"temperature": 1})
early.reportEvent("alarm", {"level": 1})
early.online()
early.offline()
early.unregister()
early.cleanup()
RESULTS["early_device"] = early.device
RESULTS["bad_info_register"] = lethingaccesssdk.ThingAccessClient({"productKey": "only"}).registerAndOnline(Thermometer())
RESULTS["no_info_register"] = lethingaccesssdk.ThingAccessClient(None).registerAndOnline(Thermometer())
try:
    lethingaccesssdk.ThingAccessClient(infos[0]).registerAndOnline(object())
except LedaException as exc:
    RESULTS["bad_callback"] = [type(exc).__name__, exc.value, str(exc.msg)]

CLIENTS = {}
for info in infos:
    custom = json.loads(info.get("custom") or "{}")
    client = lethingaccesssdk.ThingAccessClient(info)
    device = client.registerAndOnline(Silent() if custom.get("silent") else Thermometer())
    RESULTS.setdefault("registered", []).append(bool(device))
    CLIENTS[info["deviceName"]] = client
    if not custom.get("silent"):
        client.reportProperties({"temperature": 20})  # the first reading, made at import


def handler(event, context):
    request = json.loads(event)
    if request["op"] == "results":
        return RESULTS
    client = CLIENTS[request.get("device", "t1")]
    if request["op"] == "registerAndOnline":
        before = client.device
        again = client.registerAndOnline(Thermometer())
        return {"truthy": bool(again), "same": again is before}
    try:
        answer = getattr(client, request["op"])(*request.get("args", []))
    except LedaException as exc:
        return {"error": type(exc).__name__, "value": exc.value, "msg": str(exc.msg)}
    return {"answer": answer if answer is None or isinstance(answer, str) else bool(answer)}


reading = 20
while True:  # the polling loop: runs at module level for as long as the driver runs
    time.sleep(0.2)
    reading = 21 if reading >= 30 else reading + 1
    try:
        CLIENTS["t1"].reportProperties({"temperature": reading})
    except LedaException as exc:
        logging.info("not reported: %s", exc)
