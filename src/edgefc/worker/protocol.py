"""The framed protocol between the gateway and a worker: a 4-byte big-endian length, then one msgpack map.

Every frame is a map with a ``t`` (type) key. Gateway → worker: ``init``, ``invoke``, ``reply``, ``stop``.
Worker → gateway: ``hello``, ``ready``, ``init_error``, ``result``, ``error``, ``log``, ``call``.

- ``hello``      {instance, key, pid}                         first frame on a new connection
- ``init``       {handler, initializer, function: {name, handler, memory, timeout, version}, config}
- ``ready``      {}                                           module imported, initializer done
- ``init_error`` {error: {type, message, stack}}
- ``invoke``     {id, payload: bytes, deadline_ms, trigger: {type, topic, source}}
- ``result``     {id, payload: bytes}
- ``error``      {id, error: {type, message, stack}}
- ``log``        {time, level, stream, request_id, message}
- ``call``       {cid, op, args}                               an SDK call made by function code
- ``reply``      {cid, ok: bool, value | error}
- ``stop``       {}                                           finish in-flight events and exit
- ``callback``   {cid, op, args}                              the gateway asks the instance (driver callbacks)
- ``callback_reply`` {cid, ok: bool, value | error}           the instance's answer
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:  # the worker side never needs asyncio: importing it costs a container ~20 ms per start
    import asyncio

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024

_packb = msgpack.Packer(use_bin_type=True).pack


class ProtocolError(Exception):
    """A peer sent something that is not a frame of this protocol."""


def encode(frame: dict[str, Any]) -> bytes:
    body = _packb(frame)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    frame = msgpack.unpackb(body, raw=False)
    if not isinstance(frame, dict) or "t" not in frame:
        raise ProtocolError("frame is not a map with a 't' key")
    return frame


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    """Read one frame from a blocking socket (the worker side)."""
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return decode(recv_exact(sock, length))


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """Read one frame from an asyncio stream (the gateway side); raises EOFError at the end."""
    import asyncio

    try:
        head = await reader.readexactly(HEADER.size)
        (length,) = HEADER.unpack(head)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise EOFError("peer closed the connection") from exc
    return decode(body)
