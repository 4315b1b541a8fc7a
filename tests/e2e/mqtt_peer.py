"""MQTT peers of the e2e messaging tests: a stand-alone Mosquitto (the "cloud"), subscribers and devices."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import need_binary


def free_port() -> int:
    """A loopback port that was free a moment ago (mosquitto cannot take an already-bound socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, *, open: bool = True) -> None:
    """Poll until something accepts (``open``) or nothing accepts on 127.0.0.1:``port``; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            up = True
        except OSError:
            up = False
        if up == open:
            return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not {'open' if open else 'close'} within {timeout}s")


class Mosquitto:
    """A Mosquitto of the test's own (the "cloud" broker) that can be stopped and started on the same port.

    Persistence is on, so a persistent subscriber session and its queued QoS 1 messages survive a restart
    (mosquitto writes its database on SIGTERM).
    """

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.binary = need_binary("mosquitto")
        self.state_dir = state_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.state_dir}/\nlog_dest file {self.state_dir}/mosquitto.log\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _connect(port: int, client: paho.Client, timeout: float = 10.0) -> None:
    connected = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        client.disconnect()
        raise TimeoutError(f"no CONNACK from 127.0.0.1:{port}")


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


class Subscriber:
    """A paho client that records (topic, payload) of everything on ``filters``; ``persistent`` keeps its
    session (and its queued QoS 1 messages) across its broker's restarts and reconnects by itself."""

    def __init__(self, port: int, *filters: str, qos: int = 1, persistent: bool = False) -> None:
        self.port = port
        self.filters = filters
        self.qos = qos
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        _connect(port, self.client)
        self.client.on_connect = self._on_reconnect
        for topic_filter in filters:
            self._subscribed.clear()
            self.client.subscribe(topic_filter, qos)
            if not self._subscribed.wait(10):
                raise TimeoutError(f"no SUBACK for {topic_filter}")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_reconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure and not flags.session_present:
            for topic_filter in self.filters:
                client.subscribe(topic_filter, self.qos)

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [p for t, p in self.received() if topic is None or t == topic]

    def wait_count(self, n: int, timeout: float = 10.0, topic: str | None = None) -> list[bytes]:
        """Wait until at least ``n`` messages (on ``topic``) arrived; returns their payloads. Raises AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.payloads(topic)
            if len(got) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {n} messages on {topic or self.filters}, got {self.received()!r}")

    def close(self) -> None:
        _close(self.client)


class Device:
    """A device: a paho client that publishes QoS 0/1 messages on the gateway's broker."""

    def __init__(self, port: int, client_id: str = "") -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"test-dev-{uuid.uuid4().hex[:8]}"
        )
        _connect(port, self.client)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 10.0) -> None:
        info = self.client.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(timeout)

    def close(self) -> None:
        _close(self.client)
