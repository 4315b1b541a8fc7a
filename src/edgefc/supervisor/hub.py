"""The worker socket: one Unix socket where every instance connects back and proves who it is."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from pathlib import Path

from edgefc.worker.protocol import HELLO_MAX_FRAME, MAX_UNPROVEN, ProtocolError, read_frame

log = logging.getLogger("edgefc.hub")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class WorkerHub:
    """Accepts worker connections and hands each to the instance that expects it (matched by id and key)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._expected: dict[str, tuple[str, asyncio.Future[Streams]]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._unproven = 0

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.socket_path), limit=2**26)
        # Containers run workers as an unprivileged user; the key, not the file mode, authenticates.
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def expect(self, instance_id: str, key: str) -> asyncio.Future[Streams]:
        fut: asyncio.Future[Streams] = asyncio.get_running_loop().create_future()
        self._expected[instance_id] = (key, fut)
        return fut

    def forget(self, instance_id: str) -> None:
        """The instance is gone: stop expecting it, and close its connection if it made one (idempotent)."""
        entry = self._expected.pop(instance_id, None)
        if entry is None:
            return
        fut = entry[1]
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled() and fut.exception() is None:
            fut.result()[1].close()  # connected, but its instance was given up before it read a frame

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._unproven >= MAX_UNPROVEN:  # connections that have not said hello yet cost the gateway nothing more
            writer.close()
            return
        self._unproven += 1
        try:
            hello = await asyncio.wait_for(read_frame(reader, HELLO_MAX_FRAME), 10)
        except (TimeoutError, EOFError, ProtocolError, OSError, ValueError):
            writer.close()
            return
        finally:
            self._unproven -= 1
        entry = self._expected.get(str(hello.get("instance")))
        if hello.get("t") != "hello" or entry is None or not hmac.compare_digest(entry[0], str(hello.get("key", ""))):
            log.warning("refused a worker connection that did not identify as an expected instance")
            writer.close()
            return
        # The entry stays until forget(): the hub owns the connection until the instance is done with it.
        if entry[1].done():
            writer.close()
            return
        entry[1].set_result((reader, writer))
