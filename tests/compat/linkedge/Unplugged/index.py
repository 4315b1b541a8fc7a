# A driver whose polling loop at module level dies after a while: its instance must be restarted.
import time

started = time.time()
while True:
    time.sleep(0.1)
    if time.time() - started > 0.8:
        raise RuntimeError("sensor unplugged")


def handler(event, context):
    return 'hello world'
