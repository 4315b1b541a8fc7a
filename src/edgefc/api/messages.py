"""HTTP API of the router: publish a message, look at the durable queues, replay dead letters.

The app puts the gateway on ``app.state.gateway`` (with ``router`` and ``queue``), checks the token and maps
EdgefcError subclasses to the JSON error shape; this module only raises them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import pydantic
from starlette.requests import Request
from starlette.responses import Response

from edgefc.api.body import read_body
from edgefc.api.routing import Range
from edgefc.api.routing import Router as Routes
from edgefc.api.state import gateway_of
from edgefc.errors import BadRequest, PayloadTooLarge, ValidationError
from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.topics import validate_topic

MAX_PAYLOAD_BYTES = 256 * 1024  # a message is an event, not a file transfer; Link IoT Edge caps at 128 KiB
MAX_BODY_BYTES = MAX_PAYLOAD_BYTES * 4 // 3 + 64 * 1024  # base64 of the largest payload, plus the topic

router = Routes(tags=["messages"])


class MessageIn(pydantic.BaseModel):
    """Body of ``POST /v1/messages``."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    topic: str
    payload: str = ""
    qos: Literal[0, 1] = 0
    payload_encoding: Literal["utf-8", "base64"] = pydantic.Field("utf-8", alias="payloadEncoding")


def _gateway(request: Request) -> tuple[Router, DurableQueue]:
    gateway = gateway_of(request)
    return gateway.router, gateway.queue


@router.post(
    "/v1/messages",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MessageIn.model_json_schema()}},
        }
    },
)
async def post_message(request: Request) -> dict[str, str]:
    """Publish into the router as source ``api``; 202 once accepted (for QoS 1: durably queued).

    Raises PayloadTooLarge over the cap, BadRequest for a body that is not JSON, ValidationError for bad
    fields, QueueFull when the durable queue is full.
    """
    body = await read_body(request, MAX_BODY_BYTES)
    try:
        data = MessageIn.model_validate_json(body)
    except pydantic.ValidationError as exc:
        problems = [
            f"body.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else f"body: {e['msg']}"
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise BadRequest("the body is not JSON: " + "; ".join(problems)) from None
        raise ValidationError(problems) from None
    problem = validate_topic(data.topic)
    if problem:
        raise ValidationError([f"body.topic: {problem}"])
    if data.payload_encoding == "base64":
        try:
            payload = base64.b64decode(data.payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(["body.payload: not valid base64"]) from None
    else:
        payload = data.payload.encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload is {len(payload)} bytes; the cap is {MAX_PAYLOAD_BYTES}")
    message = Message(data.topic, payload, SourceType.API, "api", data.qos)
    message_router, _ = _gateway(request)
    await message_router.publish(message)
    return {"id": message.id}


@router.get("/v1/queues")
async def get_queues(request: Request) -> dict[str, Any]:
    """Durable queue usage and, per target, its depth and delivery counts."""
    message_router, queue = _gateway(request)
    stats = await queue.astats()
    lanes = message_router.stats()
    targets = sorted(set(stats["targets"]) | set(lanes))
    empty = {"memory_depth": 0, "delivered": 0, "failed": 0, "dropped": 0, "dead_lettered": 0}
    return {
        "bytes": stats["bytes"],
        "max_bytes": stats["max_bytes"],
        "depth": stats["depth"],
        "in_flight": stats["in_flight"],
        "deadletters": stats["deadletters"],
        "targets": [
            {"target": t, "durable_depth": stats["targets"].get(t, 0), **lanes.get(t, empty)} for t in targets
        ],
    }


@router.get("/v1/deadletters")
async def get_deadletters(request: Request, limit: int = 1000) -> dict[str, Any]:
    """The dead letters, oldest first. Raises BadRequest for a limit outside 1..10000."""
    if not 1 <= limit <= 10000:
        raise BadRequest("limit must be between 1 and 10000")
    _, queue = _gateway(request)
    letters = await queue.adeadletters(limit)
    return {"deadletters": [letter.to_dict() for letter in letters]}


DeadLetterId = Annotated[int, Range(ge=1, le=2**63 - 1, description="a dead letter's id")]


@router.post("/v1/deadletters/{deadletter_id}/replay")
async def replay_deadletter(request: Request, deadletter_id: DeadLetterId) -> dict[str, int]:
    """Put a dead letter back into its target's queue. Raises NotFound for an unknown id."""
    message_router, _ = _gateway(request)
    return {"id": await message_router.replay(deadletter_id)}


@router.delete("/v1/deadletters/{deadletter_id}", status_code=204)
async def delete_deadletter(request: Request, deadletter_id: DeadLetterId) -> Response:
    """Discard a dead letter for good (frees its bytes in the queue). Raises NotFound for an unknown id."""
    _, queue = _gateway(request)
    await queue.adiscard(deadletter_id)
    return Response(status_code=204)
