"""An MQTT v5 connection (paho-mqtt 2) for the router: the local broker or the cloud's upstream broker.

paho's network loop runs in its own thread; incoming messages are handed to the event loop with
``call_soon_threadsafe`` and acknowledged (manual ack) only after ``on_message`` returned, so a QoS 1 message
the router has not accepted is not acked. Reconnects back off, capped and jittered, from a supervisor thread.
Overlapping subscriptions: each filter gets its own MQTT v5 subscription identifier, and of the copies a
broker sends for one publication only the one for the lowest matching identifier is passed on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefc.errors import Unavailable
from edgefc.router import topics
from edgefc.router.message import Message, SourceType

log = logging.getLogger("edgefc.mqtt")
_SESSION_EXPIRY_S = 86400


class LinkState(enum.Enum):
    """Where a link is in its life."""

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``tcp://``; port defaults to 1883) → (host, port); raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"'{url}' is not an MQTT URL such as mqtt://127.0.0.1:1883")
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise ValueError(f"'{url}': {exc}") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"'{url}': an MQTT URL has no path or query")
    return parts.hostname, port


class MqttLink:
    """One MQTT client connection with subscriptions, deduped delivery in and PUBACK-confirmed publish out.

    ``on_message`` runs as one task per message, started in arrival order; to keep that order it must take
    the message's place (as ``Router.publish`` does) before its first ``await``. ``on_message_nowait``, when
    given, is tried first for a message that no earlier one is still being handled ahead of: it handles the
    message at once and returns True, or does nothing and returns False (then ``on_message`` gets it), which
    saves a task per message on the common path.

    Raises ValueError at construction for a URL that does not parse.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        on_message: Callable[[Message], Awaitable[None]] | None = None,
        on_message_nowait: Callable[[Message], bool] | None = None,
        source_type: str = "mqtt",
        persistent_session: bool = False,
        keepalive: int = 30,
        backoff_min: float = 0.1,
        backoff_max: float = 10.0,
        publish_timeout: float = 10.0,
        inbound_limit: int = 1000,
    ) -> None:
        self.url = url
        self.host, self.port = parse_mqtt_url(url)
        self.client_id = client_id
        self.source_type = SourceType(source_type)
        self.state = LinkState.NEW
        self.stats = {"received": 0, "duplicates": 0, "published": 0, "connects": 0, "handler_errors": 0}
        self._on_message = on_message
        self._on_message_nowait = on_message_nowait
        self._persistent = persistent_session
        self._keepalive = keepalive
        self._backoff = (backoff_min, backoff_max)
        self._publish_timeout = publish_timeout
        self._inbound_slots = threading.Semaphore(inbound_limit)  # backpressure onto the broker's socket
        self._subs: dict[str, int] = {}  # filter → subscription identifier
        self._lowest_sub: dict[str, int | None] = {}  # topic → lowest identifier of our filters matching it
        self._subs_lock = threading.Lock()
        self._next_sub_id = 1
        self._unacked_subs: set[int] = set()  # SUBSCRIBE mids still waiting for their SUBACK
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._stopping = threading.Event()
        self._wake_lock = threading.Lock()  # paho's wake-up socket: swapped by the supervisor, muted by burst
        self._lost = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected_event: asyncio.Event | None = None
        self._subscribed_event: asyncio.Event | None = None
        # Incoming messages wait in a deque; the loop is woken once per burst, not once per message.
        self._inbox: collections.deque[tuple[Message, int, int]] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._inbox_signalled = False
        self._inbox_event: asyncio.Event | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._supervisor: threading.Thread | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,  # the supervisor reconnects, with jitter
            manual_ack=True,
        )
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and it has not been lost since."""
        return self.state is LinkState.CONNECTED

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see ``wait_connected``)."""
        self._loop = asyncio.get_running_loop()
        self._connected_event = asyncio.Event()
        self._subscribed_event = asyncio.Event()
        self._inbox_event = asyncio.Event()
        self._consumer = asyncio.create_task(self._consume(), name=f"mqtt-in:{self.client_id}")
        self.state = LinkState.CONNECTING
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"mqtt-link:{self.client_id}", daemon=True
        )
        self._supervisor.start()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until connected; False when ``timeout`` seconds passed first."""
        assert self._connected_event is not None, "start() first"
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait until connected and every subscription has its SUBACK; False after ``timeout`` seconds."""
        assert self._subscribed_event is not None, "start() first"
        try:
            await asyncio.wait_for(self._subscribed_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Disconnect, stop the threads and the consumer; pending publishes fail with Unavailable."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        self._stopping.set()
        self._client.disconnect()
        if self._supervisor is not None:
            await asyncio.to_thread(self._supervisor.join, 10)
        tasks = [task for task in (self._consumer, *self._in_flight) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending("link closed")

    def set_subscriptions(self, filters: Iterable[str]) -> None:
        """Subscribe to exactly ``filters`` (QoS 1); kept across reconnects. Raises ValueError for a bad filter."""
        wanted = set(filters)
        for topic_filter in wanted:
            problem = topics.validate_filter(topic_filter)
            if problem:
                raise ValueError(f"subscription filter: {problem}")
        with self._subs_lock:
            removed = [f for f in self._subs if f not in wanted]
            added = {}
            for topic_filter in sorted(wanted - self._subs.keys()):
                added[topic_filter] = self._next_sub_id
                self._next_sub_id += 1
            for topic_filter in removed:
                del self._subs[topic_filter]
            self._subs.update(added)
            self._lowest_sub.clear()
        if self.connected:
            if removed:
                self._client.unsubscribe(removed)
            for topic_filter, sub_id in added.items():
                self._subscribe(topic_filter, sub_id)

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Publish; for QoS 1 return only after the broker's PUBACK.

        Raises Unavailable when not connected, when the connection drops before the PUBACK, when the broker
        refuses the message or no PUBACK arrives within ``publish_timeout``.
        """
        info = self._publish(topic, payload, qos)
        if qos == 0:
            return
        assert self._loop is not None
        # Registered before the next loop step; the PUBACK is resolved on the loop, so it cannot come first.
        future = self._loop.create_future()
        self._acks[info.mid] = future
        try:
            await asyncio.wait_for(future, self._publish_timeout)
        except TimeoutError:
            raise Unavailable(f"no PUBACK from {self.url} within {self._publish_timeout}s") from None
        finally:
            self._acks.pop(info.mid, None)

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0 without waiting for anything; raises Unavailable as ``publish`` does."""
        self._publish(topic, payload, 0)

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Publishes made inside wake paho's network thread once, at the end, instead of once each.

        paho writes a byte to its wake-up socket on every publish from another thread (a syscall, and a wakeup
        of the network thread for each message); its network thread never writes to that socket itself.
        """
        if not hasattr(self._client, "_sockpairW"):  # a paho without that private: one wake-up per publish, still correct
            yield
            return
        with self._wake_lock:
            client = self._client
            wake, client._sockpairW = client._sockpairW, None
            try:
                yield
            finally:
                client._sockpairW = wake
                if wake is not None:
                    try:
                        wake.send(b"0")
                    except OSError:  # BlockingIOError: a wake-up is pending anyway; else the link is going
                        pass

    def _publish(self, topic: str, payload: bytes, qos: int) -> paho.MQTTMessageInfo:
        if not self.connected:
            raise Unavailable(f"MQTT broker {self.url} is not connected")
        try:
            info = self._client.publish(topic, payload, qos)
        except (OSError, ValueError) as exc:  # the connection went away under us
            raise Unavailable(f"MQTT publish to {self.url} failed: {exc}") from exc
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise Unavailable(f"MQTT publish to {self.url} failed: {paho.error_string(info.rc)}")
        self.stats["published"] += 1
        return info

    # -- paho thread side ------------------------------------------------------------------------------

    def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            self._lost.clear()
            properties = Properties(PacketTypes.CONNECT)
            if self._persistent:
                properties.SessionExpiryInterval = _SESSION_EXPIRY_S
            try:
                self._client.connect(
                    self.host,
                    self.port,
                    self._keepalive,
                    clean_start=not self._persistent,
                    properties=properties,
                )
            except OSError as exc:
                log.debug("connect to %s failed: %s", self.url, exc)
            else:
                with self._wake_lock:
                    self._client.loop_start()
                while not self._stopping.is_set() and not self._lost.wait(0.2):
                    pass
                self._client.loop_stop()
                # loop_start makes a fresh wake-up socket pair each time and nothing closes the old one.
                with self._wake_lock:
                    self._client._reset_sockets(sockpair_only=True)
                if self.stats["connects"] and self._lost.is_set():
                    delay = self._backoff[0]  # a session that worked starts the backoff over
            if self._stopping.is_set():
                break
            # Jitter spreads the reconnects of many gateways after a shared broker restarts.
            self._stopping.wait(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff[1])

    def _handle_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason)
            client.disconnect()
            return
        self.stats["connects"] += 1
        if self._stopping.is_set():
            return
        with self._subs_lock:
            self._unacked_subs = {-1}  # holds "subscribed" back until the resubscriptions below are sent
        self.state = LinkState.CONNECTED
        log.info("connected to MQTT broker %s as %s", self.url, self.client_id)
        with self._subs_lock:
            subs = dict(self._subs)
        for topic_filter, sub_id in subs.items():
            self._subscribe(topic_filter, sub_id)
        with self._subs_lock:
            self._unacked_subs.discard(-1)
        self._to_loop(self._mark_connected, True)

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.CONNECTING
            log.warning("lost MQTT broker %s: %s", self.url, reason)
        self._lost.set()
        self._to_loop(self._mark_connected, False)
        self._to_loop(self._fail_pending, f"connection to {self.url} lost")

    def _handle_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._to_loop(self._resolve_ack, mid, None if not reason.is_failure else str(reason))

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._is_duplicate(msg):
            self.stats["duplicates"] += 1
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self.stats["received"] += 1
        source_id = ""
        for key, value in getattr(msg.properties, "UserProperty", None) or []:
            if key == "client_id":
                source_id = value
        message = Message(msg.topic, bytes(msg.payload), self.source_type, source_id, min(msg.qos, 1))
        while not self._inbound_slots.acquire(timeout=0.5):
            if self._stopping.is_set():
                return
        with self._inbox_lock:
            self._inbox.append((message, msg.mid, msg.qos))
            signal, self._inbox_signalled = not self._inbox_signalled, True
        if signal and self._inbox_event is not None:
            self._to_loop(self._inbox_event.set)

    def _is_duplicate(self, msg: paho.MQTTMessage) -> bool:
        ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        if not ids:
            return False
        topic = msg.topic
        with self._subs_lock:
            if topic in self._lowest_sub:
                lowest = self._lowest_sub[topic]
            else:
                ours = [sid for f, sid in self._subs.items() if topics.matches(f, topic)]
                lowest = min(ours) if ours else None
                if len(self._lowest_sub) >= 4096:
                    self._lowest_sub.clear()  # topic sets are small in practice; a reset keeps this bounded
                self._lowest_sub[topic] = lowest
        return lowest is not None and lowest not in ids

    def _subscribe(self, topic_filter: str, sub_id: int) -> None:
        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = sub_id
        with self._subs_lock:
            _, mid = self._client.subscribe(topic_filter, qos=1, properties=properties)
            if mid is not None:
                self._unacked_subs.add(mid)
        self._to_loop(self._mark_subscribed)

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.warning("MQTT broker %s refused a subscription: %s", self.url, reason)
        with self._subs_lock:
            self._unacked_subs.discard(mid)
        self._to_loop(self._mark_subscribed)

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the gateway is gone, nobody waits for this any more
            pass

    # -- event loop side -------------------------------------------------------------------------------

    def _mark_connected(self, up: bool) -> None:
        if self._connected_event is None:
            return
        if up:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        self._mark_subscribed()

    def _mark_subscribed(self) -> None:
        if self._subscribed_event is None:
            return
        with self._subs_lock:
            done = self.connected and not self._unacked_subs
        if done:
            self._subscribed_event.set()
        else:
            self._subscribed_event.clear()

    def _resolve_ack(self, mid: int, error: str | None) -> None:
        future = self._acks.get(mid)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(Unavailable(f"broker {self.url} refused the message: {error}"))

    def _fail_pending(self, why: str) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(Unavailable(why))

    async def _consume(self) -> None:
        assert self._inbox_event is not None
        while True:
            await self._inbox_event.wait()
            self._inbox_event.clear()
            with self._inbox_lock:
                batch = list(self._inbox)
                self._inbox.clear()
                self._inbox_signalled = False
            nowait = self._on_message_nowait
            for message, mid, qos in batch:
                # Without a message still in flight ahead of this one, handling it right here keeps the order.
                if nowait and not self._in_flight and self._handle_nowait(nowait, message, mid, qos):
                    continue
                # One task per message, started in arrival order: the router takes each message's place in
                # its queues before its first await, so order holds while durable commits overlap.
                task = asyncio.create_task(self._handle(message, mid, qos))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    def _handle_nowait(self, nowait: Callable[[Message], bool], message: Message, mid: int, qos: int) -> bool:
        try:
            if not nowait(message):
                return False
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("routing MQTT message on %s failed; left unacknowledged", message.topic)
            self._inbound_slots.release()
            return True
        self._inbound_slots.release()
        if qos and self.connected:
            self._client.ack(mid, qos)
        return True

    async def _handle(self, message: Message, mid: int, qos: int) -> None:
        try:
            if self._on_message is not None:
                await self._on_message(message)
        except Exception:
            # Not acked: the broker keeps the message in the session and sends it again on the next
            # connection, where acking it would lose a QoS 1 message the router never took (queue full,
            # router stopping).
            self.stats["handler_errors"] += 1
            log.exception("routing MQTT message on %s failed; left unacknowledged", message.topic)
            return
        finally:
            self._inbound_slots.release()
        if qos and self.connected:
            self._client.ack(mid, qos)
