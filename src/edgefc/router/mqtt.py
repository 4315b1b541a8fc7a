"""An MQTT v5 connection (paho-mqtt 2) for the router: the local broker or the cloud's upstream broker.

paho runs on the gateway's event loop through its public socket callbacks, as aiomqtt does (``paholoop.py``):
every paho callback runs on the loop and no thread of ours touches the client. The one blocking step,
``connect`` (name resolution and the TCP handshake), runs in the default executor, as aiomqtt does.

Incoming QoS 1 messages are acknowledged (manual ack) only after the router took them, so a message the router
has not accepted stays in the broker's session. Reconnects back off, capped and jittered. Overlapping
subscriptions deliver once (``subscriptions.py``).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefc.backoff import Backoff
from edgefc.errors import Unavailable
from edgefc.router.message import Message, SourceType, redelivery_stable_id
from edgefc.router.paholoop import PahoOnLoop
from edgefc.router.subscriptions import Subscriptions
from edgefc.router.topics import TopicFilter

log = logging.getLogger("edgefc.mqtt")
_SESSION_EXPIRY_S = 86400
_RESEND_GRACE_S = 2.0  # how long QoS 1 publishes wait for paho's resend after the connection dropped


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
    saves a task per message on the common path. While ``inbound_limit`` messages are being handled the link
    stops reading its socket, which pushes back on the broker.

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
        self._backoff = Backoff(backoff_min, backoff_max)
        self._publish_timeout = publish_timeout
        self._inbound_limit = inbound_limit
        self._subs = Subscriptions()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._generation = 0  # connection number: a message is acked only on the connection it came on
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io: PahoOnLoop | None = None
        self._connected_event = asyncio.Event()
        self._subscribed_event = asyncio.Event()
        self._lost_event = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,  # the supervisor task reconnects, with jitter
            manual_ack=True,
        )
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        # on_publish is set only while a QoS 1 publish waits for its PUBACK: with it set, paho builds a reason
        # code and a properties object for every QoS 0 packet it writes, for nobody.
        self._client.on_publish = None
        self._client.on_subscribe = self._handle_subscribe

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and it has not been lost since."""
        return self.state is LinkState.CONNECTED

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see ``wait_connected``)."""
        self._loop = asyncio.get_running_loop()
        self._io = PahoOnLoop(self._client, self._loop, self.client_id)
        self.state = LinkState.CONNECTING
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-link:{self.client_id}")

    async def wait_connected(self, within: float) -> bool:
        """Wait until connected; False when ``within`` seconds passed first."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), within)
        except TimeoutError:
            return False
        return True

    async def wait_subscribed(self, within: float) -> bool:
        """Wait until connected and every subscription has its SUBACK; False after ``within`` seconds."""
        try:
            await asyncio.wait_for(self._subscribed_event.wait(), within)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Disconnect and stop every task of the link; pending publishes fail with Unavailable."""
        if self.state is LinkState.CLOSED:
            return
        was_connected = self.connected
        self.state = LinkState.CLOSED
        if self._io is not None:
            self._io.closed = True
        tasks = [t for t in (self._supervisor, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        if was_connected:
            self._client.disconnect()  # queued; the writer sends it, then paho closes the socket
            try:
                await asyncio.wait_for(self._lost_event.wait(), 2.0)
            except TimeoutError:
                pass
        if self._io is not None:
            self._io.drop()  # paho's own close already ran for a clean DISCONNECT; this is the fallback
        self._fail_pending("link closed")

    def set_subscriptions(self, filters: Iterable[str | TopicFilter]) -> None:
        """Subscribe to exactly ``filters`` (QoS 1); kept across reconnects. Raises ValueError for a bad filter."""
        added, removed = self._subs.replace(filters)
        if self.connected:
            if removed:
                self._client.unsubscribe([str(f) for f in removed])
            for topic_filter, sub_id in added.items():
                self._subscribe(topic_filter, sub_id)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, message_id: str | None = None) -> None:
        """Publish; for QoS 1 return only after the broker's PUBACK. ``message_id`` travels as the MQTT v5 user
        property ``edgefc-message-id``, so a subscriber can drop the duplicates of at-least-once delivery.

        Raises Unavailable when not connected, when the connection drops before the PUBACK, when the broker
        refuses the message or no PUBACK arrives within ``publish_timeout``.
        """
        properties = None
        if message_id is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = ("edgefc-message-id", message_id)
        if qos and not self._acks:
            self._client.on_publish = self._handle_publish
        try:
            info = self._publish(topic, payload, qos, properties)
        except BaseException:
            self._publish_waits_done()
            raise
        if qos == 0:
            return
        assert self._loop is not None
        # paho reports the PUBACK from loop_read, on this loop: it cannot come before this line.
        future = self._loop.create_future()
        self._acks[info.mid] = future
        try:
            await asyncio.wait_for(future, self._publish_timeout)
        except TimeoutError:
            raise Unavailable(f"no PUBACK from {self.url} within {self._publish_timeout}s") from None
        finally:
            self._acks.pop(info.mid, None)
            self._publish_waits_done()

    def _publish_waits_done(self) -> None:
        if not self._acks:
            self._client.on_publish = None

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0 without waiting for anything; raises Unavailable as ``publish`` does.

        Publishes made in one loop step leave in one write burst: paho only queues them and asks for the
        writer, which runs once the step is over.
        """
        self._publish(topic, payload, 0)

    def _publish(self, topic: str, payload: bytes, qos: int, properties: Properties | None = None
                 ) -> paho.MQTTMessageInfo:  # fmt: skip
        if not self.connected:
            raise Unavailable(f"MQTT broker {self.url} is not connected")
        try:
            info = self._client.publish(topic, payload, qos, properties=properties)
        except (OSError, ValueError) as exc:  # the connection went away under us
            raise Unavailable(f"MQTT publish to {self.url} failed: {exc}") from exc
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise Unavailable(f"MQTT publish to {self.url} failed: {paho.error_string(info.rc)}")
        self.stats["published"] += 1
        return info

    # -- connection lifetime ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._lost_event.clear()
            properties = Properties(PacketTypes.CONNECT)
            if self._persistent:
                properties.SessionExpiryInterval = _SESSION_EXPIRY_S
            try:
                # Name resolution and the TCP handshake block: the executor takes them (aiomqtt does the same).
                await loop.run_in_executor(None, functools.partial(
                    self._client.connect, self.host, self.port, self._keepalive,
                    clean_start=not self._persistent, properties=properties,
                ))  # fmt: skip
            except OSError as exc:
                log.debug("connect to %s failed: %s", self.url, exc)
            else:
                await self._lost_event.wait()
                if self.stats["connects"]:
                    self._backoff.reset()  # a session that worked starts the backoff over
            # Jitter spreads the reconnects of many gateways after a shared broker restarts.
            await asyncio.sleep(self._backoff.next())

    # -- paho callbacks (all on the loop) ----------------------------------------------------------------

    def _handle_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason)
            client.disconnect()
            return
        self.stats["connects"] += 1
        self._generation += 1
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CONNECTED
        log.info("connected to MQTT broker %s as %s", self.url, self.client_id)
        self._subs.unacked = set()
        for topic_filter, sub_id in self._subs.ids.items():
            self._subscribe(topic_filter, sub_id)
        self._connected_event.set()
        self._mark_subscribed()

    def _handle_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.CONNECTING
            log.warning("lost MQTT broker %s: %s", self.url, reason)
        self._lost_event.set()
        self._connected_event.clear()
        self._mark_subscribed()
        # paho sends the unacknowledged QoS 1 publishes again after a reconnect, and their PUBACKs settle the
        # waiting publishes: failing them at once would make the router publish them a second time. Only a
        # link still down after a grace period fails them (the router then waits for it with backoff).
        if self._loop is not None and self._acks:
            generation = self._generation
            self._loop.call_later(_RESEND_GRACE_S, self._fail_if_still_down, generation)

    def _handle_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        future = self._acks.get(mid)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(Unavailable(f"broker {self.url} refused the message: {reason}"))
        else:
            future.set_result(None)

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        qos = msg.qos
        if self._subs.is_duplicate(msg.topic, getattr(msg.properties, "SubscriptionIdentifier", None)):
            self.stats["duplicates"] += 1
            if qos:
                client.ack(msg.mid, qos)
            return
        self.stats["received"] += 1
        source_id = ""
        for key, value in getattr(msg.properties, "UserProperty", None) or []:
            if key == "client_id":
                source_id = value
        payload = bytes(msg.payload)
        if qos:
            msg_id = redelivery_stable_id(self.client_id, msg.mid, msg.topic, payload)
            message = Message(msg.topic, payload, self.source_type, source_id, 1, msg_id, redelivered=bool(msg.dup))
        else:
            message = Message(msg.topic, payload, self.source_type, source_id, 0)
        nowait = self._on_message_nowait
        # Without a message still in flight ahead of this one, handling it right here keeps the order.
        if nowait is not None and not self._in_flight:
            handled = self._handle_nowait(nowait, message)
            if handled is not None:
                if handled and qos:
                    client.ack(msg.mid, qos)
                return
        # One task per message, started in arrival order: the router takes each message's place in its
        # queues before its first await, so order holds while durable commits overlap.
        task = asyncio.create_task(self._handle(message, msg.mid, qos, self._generation))
        self._in_flight.add(task)
        task.add_done_callback(self._handled)
        if len(self._in_flight) >= self._inbound_limit:
            assert self._io is not None
            self._io.pause_reading()  # backpressure: the broker's socket fills, then the broker queues

    def _handle_nowait(self, nowait: Callable[[Message], bool], message: Message) -> bool | None:
        """True: routed; None: not for the quick path (the task path takes it); False: routing failed, and
        the message stays unacknowledged (the broker sends a QoS 1 one again on the next connection)."""
        try:
            return True if nowait(message) else None
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("routing MQTT message on %s failed; left unacknowledged", message.topic)
            return False

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if len(self._in_flight) < self._inbound_limit // 2 and self.state is not LinkState.CLOSED and self._io:
            self._io.resume_reading()

    async def _handle(self, message: Message, mid: int, qos: int, generation: int) -> None:
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
        # A mid names a message only on the connection it came on; after a reconnect the broker sends the
        # unacknowledged ones again (the router keeps the duplicate's id apart only by its content).
        if qos and self.connected and generation == self._generation:
            self._client.ack(mid, qos)

    def _subscribe(self, topic_filter: TopicFilter, sub_id: int) -> None:
        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = sub_id
        _, mid = self._client.subscribe(str(topic_filter), qos=1, properties=properties)
        if mid is not None:
            self._subs.unacked.add(mid)
        self._mark_subscribed()

    def _handle_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.warning("MQTT broker %s refused a subscription: %s", self.url, reason)
        self._subs.unacked.discard(mid)
        self._mark_subscribed()

    def _mark_subscribed(self) -> None:
        if self.connected and not self._subs.unacked:
            self._subscribed_event.set()
        else:
            self._subscribed_event.clear()

    def _fail_if_still_down(self, generation: int) -> None:
        if self._generation == generation or self.state is LinkState.CLOSED:
            self._fail_pending(f"connection to {self.url} lost")

    def _fail_pending(self, why: str) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(Unavailable(why))
