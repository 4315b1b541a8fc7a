# A driver whose polling loop at module level dies after a while: its instance must be restarted, and its
# device goes offline meanwhile.
import time

import lethingaccesssdk


class Plug(lethingaccesssdk.ThingCallback):
    def getProperties(self, input_value):
        return 0, {"on": 1}


for info in lethingaccesssdk.Config().getThingInfos():
    lethingaccesssdk.ThingAccessClient(info).registerAndOnline(Plug())

started = time.time()
while True:
    time.sleep(0.1)
    if time.time() - started > 0.8:
        raise RuntimeError("sensor unplugged")


def handler(event, context):
    return 'hello world'
