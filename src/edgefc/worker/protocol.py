"""The framed protocol between the gateway and a worker: a 4-byte big-endian length, then one msgpack map.

Every frame is a map with a ``t`` (type) key. Gateway → worker: ``init``, ``invoke``, ``reply``, ``stop``.
Worker → gateway: ``hello``, ``ready``, ``init_error``, ``result``, ``error``, ``log``, ``call``, ``cast``.

- ``hello``      {instance, key, pid}                         first frame on a new connection
- ``init``       {handler, initializer, function: {name, handler, memory, timeout, version}, config}
- ``ready``      {}                                           module imported, initializer done
- ``init_error`` {error: {type, message, stack}}
- ``invoke``     {id, payload: bytes, deadline_ms, trigger: {type, topic, source}}
- ``result``     {id, payload: bytes}
- ``error``      {id, error: {type, message, stack}}
- ``log``        {time, level, stream, request_id, message}
- ``call``       {cid, op, args}                               an SDK call made by function code
- ``cast``       {op, args, rid}                             an SDK call served without a reply (``publish``
                                                               at QoS 0); a refusal goes into the function's log
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
# What a connection may send before it proved who it is: a hello is ~150 bytes. The cap is checked on the length
# header, before anything is read or allocated for the body.
HELLO_MAX_FRAME = 4096
MAX_UNPROVEN = 64  # connections on the worker socket that have not said hello yet; more are closed at once

_packb = msgpack.Packer(use_bin_type=True).pack


class ProtocolError(ValueError):
    """A peer sent something that is not a frame of this protocol (or a frame over its cap)."""


def encode(frame: dict[str, Any]) -> bytes:
    body = _packb(frame)
    return HEADER.pack(len(body)) + body


def decode(body: bytes | bytearray) -> dict[str, Any]:
    """One frame's body as its map. Raises ProtocolError for anything else (bad msgpack, not a map, no ``t``)."""
    try:
        frame = msgpack.unpackb(body, raw=False)
    except Exception as exc:  # noqa: BLE001 — msgpack raises several types (ValueError, StackError, TypeError…)
        raise ProtocolError(f"frame is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(frame, dict) or "t" not in frame:
        raise ProtocolError("frame is not a map with a 't' key")
    return frame


def take_frames(buf: bytearray) -> list[dict[str, Any]]:
    """Remove every complete frame from the front of ``buf`` and return them decoded (a partial one stays)."""
    frames: list[dict[str, Any]] = []
    pos, end = 0, len(buf)
    unpack_from = HEADER.unpack_from
    while end - pos >= 4:
        (length,) = unpack_from(buf, pos)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        stop = pos + 4 + length
        if stop > end:
            break
        frames.append(decode(buf[pos + 4 : stop]))
        pos = stop
    if pos:
        del buf[:pos]
    return frames


class FrameReader:
    """Buffered frames from a blocking socket (the worker side): one ``recv`` brings in every frame waiting."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._chunk = memoryview(bytearray(65536))  # recv_into it: no allocation per read
        self._ready: list[dict[str, Any]] = []

    def next(self) -> dict[str, Any]:
        """The next frame; blocks (honouring the socket's timeout) until one is complete; EOFError at the end."""
        while not self._ready:
            n = self.sock.recv_into(self._chunk)
            if not n:
                raise EOFError("peer closed the connection")
            self._buf += self._chunk[:n]
            self._ready = take_frames(self._buf)
            self._ready.reverse()
        return self._ready.pop()


def recv_into(sock: socket.socket, buf: bytearray) -> None:
    """Fill ``buf`` from a blocking socket, with no intermediate copy. Raises EOFError if the peer closes first."""
    view = memoryview(buf)
    while view:
        n = sock.recv_into(view)
        if not n:
            raise EOFError("peer closed the connection")
        view = view[n:]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    recv_into(sock, buf)
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    """Read one frame from a blocking socket (the worker side)."""
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return decode(recv_exact(sock, length))


async def read_frame(reader: asyncio.StreamReader, max_frame: int = MAX_FRAME) -> dict[str, Any]:
    """Read one frame from an asyncio stream (the gateway side).

    Raises EOFError at the end, ProtocolError for a frame longer than ``max_frame`` (checked on its header,
    before the body is read) or one that does not decode.
    """
    import asyncio

    try:
        head = await reader.readexactly(HEADER.size)
        (length,) = HEADER.unpack(head)
        if length > max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds {max_frame}")
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise EOFError("peer closed the connection") from exc
    return decode(body)
