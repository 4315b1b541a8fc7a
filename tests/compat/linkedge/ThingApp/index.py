# An application that runs any lecoresdk call on request and answers what it returned (or raised).
import base64
import json

import lecoresdk

it = lecoresdk.IoTData()
fc = lecoresdk.Client()


def handler(event, context):
    request = json.loads(event)
    op, params = request["op"], request.get("params")
    if op == "get_credential":
        chain = lecoresdk.CredentialProviderChain()
        return {"answer": chain.get_credential(), "singleton": chain is lecoresdk.CredentialProviderChain()}
    if isinstance(params, dict) and params.get("payload_b64"):
        params["payload"] = base64.b64decode(params.pop("payload_b64"))
    target = fc if op == "invoke_function" else it
    try:
        answer = getattr(target, op)(params)
    except lecoresdk.RequestException as exc:
        return {"raised": type(exc).__name__, "msg": exc.msg}
    return {"answer": answer}
