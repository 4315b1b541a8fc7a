"""What the durable queue hands out: leased messages, dead letters, and what a failed delivery became."""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any

from edgefc.router.message import Message


class FailOutcome(enum.Enum):
    """What ``fail`` did with a message."""

    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class QueuedMessage:
    """A leased message: its queue id, target, the message and how often delivery failed before."""

    id: int
    target: str
    message: Message
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``attempts`` times; ``error`` is the last failure."""

    id: int
    target: str
    message: Message
    attempts: int
    error: str
    failed_at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/deadletters`` entries."""
        return {
            "id": self.id,
            "target": self.target,
            "topic": self.message.topic,
            "message_id": self.message.id,
            "source": {"type": str(self.message.source_type), "id": self.message.source_id},
            "size": len(self.message.payload),
            **_payload_fields(self.message.payload),
            "attempts": self.attempts,
            "error": self.error,
            "failed_at": self.failed_at,
            "created_at": self.message.created_at,
        }


def _payload_fields(payload: bytes) -> dict[str, str]:
    """``payload`` as text, or base64 with ``payloadEncoding`` (as the message event spells it)."""
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payloadEncoding": "base64"}


def message_from_row(row: tuple[Any, ...]) -> Message:
    """The message of a ``messages``/``deadletters`` row (columns as the queue selects them)."""
    _, _, msg_id, topic, payload, source_type, source_id, qos, created_at = row[:9]
    return Message(topic, bytes(payload), source_type, source_id, qos, msg_id, created_at)
