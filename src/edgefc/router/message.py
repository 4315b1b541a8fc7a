"""A routed message and the CONTRACT §1 message event a function receives for it."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import random
import time
from dataclasses import dataclass, field


class SourceType(enum.StrEnum):
    """Where a message entered the router."""

    DEVICE = "device"
    FUNCTION = "function"
    MQTT = "mqtt"
    CLOUD = "cloud"
    API = "api"
    TIMER = "timer"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


# One encoder for every event: json.dumps with non-default options builds a new JSONEncoder per call.
_encode_event = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def new_message_id() -> str:
    """A fresh message id (hex uuid4).

    The 122 random bits come from ``random`` rather than ``os.urandom`` (a syscall per message on the hot
    path): an id must be unique, not unpredictable. ``random`` reseeds itself in a forked child.
    """
    return f"{(random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


def redelivery_stable_id(link: str, mid: int, topic: str, payload: bytes) -> str:
    """The id of a QoS 1 message that came from a broker: the same for every copy the broker sends of it.

    A broker sends an unacknowledged QoS 1 message again, with the same packet id, after a reconnect (after a
    SIGKILLed gateway's restart, say); hashing the link, packet id, topic and payload gives both copies one id,
    so a function can drop the second. Two *different* messages get the same id only when they share topic,
    payload and packet id (which repeats after 65 535 messages of one session): a dedupe window shorter than
    that never mistakes one for the other.
    """
    digest = hashlib.blake2b(f"{link}\0{mid}\0{topic}\0".encode(), digest_size=16)
    digest.update(payload)
    return digest.hexdigest()


@dataclass(frozen=True)
class Message:
    """One message on its way through the router; immutable so every target sees the same thing."""

    topic: str
    payload: bytes
    source_type: SourceType | str
    source_id: str = ""
    qos: int = 0
    id: str = field(default_factory=new_message_id)
    created_at: float = field(default_factory=time.time)  # Unix seconds
    # A broker's second copy (MQTT DUP flag): the router drops it when it already committed the first.
    redelivered: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        """Normalise the source type; raises ValueError for an unknown one or a QoS other than 0/1."""
        object.__setattr__(self, "source_type", SourceType(self.source_type))
        if self.qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {self.qos!r}")
        if not isinstance(self.payload, bytes):
            raise ValueError(f"payload must be bytes, got {type(self.payload).__name__}")

    @property
    def source(self) -> str:
        """The source as route ``source`` values spell it: ``device:/pk/dn``, ``function:name``, ``mqtt``…"""
        if self.source_type in (SourceType.DEVICE, SourceType.FUNCTION):
            return f"{self.source_type}:{self.source_id}"
        return str(self.source_type)

    def to_event(self) -> bytes:
        """The CONTRACT §1 message event as JSON bytes (non-UTF-8 payloads base64-encoded), plus ``messageId``:
        the same for every delivery of one message (retries, redeliveries after a restart), for dropping
        duplicates of at-least-once delivery."""
        event: dict[str, object] = {"topic": self.topic}
        try:
            event["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            event["payload"] = base64.b64encode(self.payload).decode("ascii")
            event["payloadEncoding"] = "base64"
        source_id = self.source_id
        if self.source_type in (SourceType.API, SourceType.CLOUD) and not source_id:
            source_id = str(self.source_type)
        event["source"] = {"type": str(self.source_type), "id": source_id}
        event["messageId"] = self.id
        return _encode_event(event).encode("utf-8")
