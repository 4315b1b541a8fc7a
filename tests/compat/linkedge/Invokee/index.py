import json


def handler(event, context):
    if event == b"fail":
        raise KeyError("gone")
    return json.dumps({"event": event.decode("utf-8"), "invoker_context": context.invoker_context})
