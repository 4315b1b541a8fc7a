import json


def handler(event, context):
    data = json.loads(event or b"{}")
    return {"hello": data.get("name", "world"), "request_id": context.request_id}
