"""A paho-mqtt client driven by an asyncio event loop through paho's public socket callbacks (as aiomqtt does).

``on_socket_open`` adds a reader that calls ``loop_read``; ``on_socket_register_write`` schedules a
``loop_write`` at the end of the current loop step (and watches the socket only when it was full);
``on_socket_close`` removes both; a task calls ``loop_misc`` once a second for keep-alives. Every paho callback
of the client then runs on the loop. Callbacks paho makes from another thread (its ``connect``, run in an
executor because it blocks) are passed to the loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

_READS_PER_WAKEUP = 256  # packets read per readable event before giving other callbacks a turn


class PahoOnLoop:
    """Binds ``client``'s socket to ``loop``; ``pause_reading``/``resume_reading`` push back on the peer."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.client = client
        self.loop = loop
        self.name = name
        self.sock: Any = None
        self.closed = False  # set by the owner: a socket opened after this is closed at once
        self._thread = threading.get_ident()
        self._reading = False
        self._paused = False
        self._write_soon = False  # a write is scheduled for the end of this loop step
        self._watching_write = False  # the socket was full: the loop's writer watch is on
        self._misc: asyncio.Task[None] | None = None
        client.on_socket_open = lambda c, u, sock: self._on_loop(self._attach, sock)
        client.on_socket_close = lambda c, u, sock: self._on_loop(self._detach, sock)
        client.on_socket_register_write = lambda c, u, sock: self._on_loop(self._want_write, sock, True)
        client.on_socket_unregister_write = lambda c, u, sock: self._on_loop(self._want_write, sock, False)

    def pause_reading(self) -> None:
        """Stop reading the socket (the peer's sends back up into its own queue) until ``resume_reading``."""
        self._paused = True
        self._stop_reader()

    def resume_reading(self) -> None:
        """Read the socket again."""
        self._paused = False
        self._start_reader()

    def drop(self) -> None:
        """Detach and close the socket now (the last resort of a close whose DISCONNECT could not go out)."""
        sock = self.sock
        if sock is not None:
            self._detach(sock)
            sock.close()

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: nobody is left to care about this socket
                pass

    def _attach(self, sock: Any) -> None:
        if self.closed:
            sock.close()
            return
        self.sock = sock
        self._start_reader()
        if self._misc is None or self._misc.done():
            self._misc = self.loop.create_task(self._misc_loop(), name=f"mqtt-misc:{self.name}")

    def _detach(self, sock: Any) -> None:
        if self.sock is not sock:
            return
        self._stop_reader()
        self.loop.remove_writer(sock)
        self._watching_write = False
        self.sock = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _want_write(self, sock: Any, want: bool) -> None:
        # paho asks for the writer on the first packet of a burst. Rather than watch the socket (two epoll
        # changes per burst), write once the current loop step is over; watch only if the socket was full.
        if sock is not self.sock:
            return
        if not want:
            if self._watching_write:
                self.loop.remove_writer(sock)
                self._watching_write = False
        elif not self._write_soon:
            self._write_soon = True
            self.loop.call_soon(self._write_now, sock)

    def _write_now(self, sock: Any) -> None:
        self._write_soon = False
        if sock is not self.sock:
            return
        self.client.loop_write()
        if self.sock is sock and self.client.want_write() and not self._watching_write:
            self.loop.add_writer(sock, self.client.loop_write)  # paho unregisters (and we stop) once drained
            self._watching_write = True

    def _start_reader(self) -> None:
        if self.sock is not None and not self._reading and not self._paused:
            self.loop.add_reader(self.sock, self._readable)
            self._reading = True

    def _stop_reader(self) -> None:
        if self.sock is not None and self._reading:
            self.loop.remove_reader(self.sock)
            self._reading = False

    def _readable(self) -> None:
        # paho's loop_read handles about one packet per call; read on while the socket has more, so one
        # wake-up of the loop takes a whole burst.
        sock = self.sock
        for _ in range(_READS_PER_WAKEUP):
            if self.client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self.sock is not sock:
                return
            if not self._reading:
                return
            try:
                if not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    return
            except OSError:  # BlockingIOError: nothing more now; anything else paho sees on its next read
                return

    async def _misc_loop(self) -> None:
        # paho's keep-alive clock: it pings and notices a dead broker from here, once a second.
        while True:
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1.0)
