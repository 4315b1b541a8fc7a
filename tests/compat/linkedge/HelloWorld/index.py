# The core SDK's HelloWorld: publishes in a loop at module level, forever.
import logging
import time

import lecoresdk

it = lecoresdk.IoTData()
pub_params = {"topic": "/topic/hello", "payload": "hello world"}
while True:
    time.sleep(0.2)
    it.publish(pub_params)
    logging.info("publish success")


def handler(event, context):
    return 'hello world'
