"""The gateway's messaging side: the managed broker, MQTT and cloud links, durable queue, router and timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefc.config.gateway import BrokerMode, GatewayConfig
from edgefc.config.manifest import Manifest
from edgefc.errors import Busy, FunctionError, Unavailable, ValidationError
from edgefc.observe.metrics import Metrics
from edgefc.router.broker import ManagedBroker
from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import RouteTable, TargetKind
from edgefc.router.topics import validate_topic
from edgefc.scheduler.timers import TimerService

if TYPE_CHECKING:
    from edgefc.router.mqtt import MqttLink

log = logging.getLogger("edgefc.messaging")

Invoke = Callable[[str, bytes, dict[str, Any]], Awaitable[bytes]]
InvokeAsync = Callable[[str, bytes, dict[str, Any]], Awaitable[str]]


class Messaging:
    """Owns everything messages travel through; ``apply(manifest)`` on every deployment."""

    def __init__(self, config: GatewayConfig, data_dir: Path, gateway_id: str, metrics: Metrics, *,
                 invoke: Invoke, invoke_async: InvokeAsync) -> None:  # fmt: skip
        self.config = config
        self.data_dir = data_dir
        self.gateway_id = gateway_id
        self.metrics = metrics
        self._invoke = invoke
        self._invoke_async = invoke_async
        self.broker: ManagedBroker | None = None
        self.local: MqttLink | None = None
        self.cloud: MqttLink | None = None
        self.queue = DurableQueue(
            data_dir / "queue.db", max_bytes=config.queues.max_bytes, max_retries=config.queues.max_retries
        )
        self.router = Router(
            RouteTable([]), queue=self.queue, deliver_function=self._deliver,
            memory_queue_size=config.queues.memory_queue_size, on_routed=metrics.routed, on_dropped=metrics.dropped,
            cloud_topic_prefix=config.cloud.topic_prefix,
        )  # fmt: skip
        self.timers = TimerService(self._fire, data_dir / "timers.json")
        self.mqtt_note = ""
        # Set by the first apply: until then the routes are unknown, and a message that a persistent broker
        # session hands over at start must wait for them rather than match an empty table and be acked.
        self._routes_known = asyncio.Event()

    async def start(self) -> None:
        mqtt = self.config.mqtt
        url: str | None = None
        if mqtt.mode is BrokerMode.MANAGED:
            if ManagedBroker.available():
                self.broker = ManagedBroker(mqtt.listen, self.data_dir / "mosquitto", persistence=mqtt.persistence)
                await self.broker.start()
                url = self.broker.url
            else:
                self.mqtt_note = "mqtt.broker is managed but Mosquitto is not installed: running without MQTT"
                log.warning(self.mqtt_note)
        elif mqtt.mode is BrokerMode.EXTERNAL:
            url = mqtt.broker
        else:
            self.mqtt_note = "mqtt.broker is off"
        if url is not None or self.config.cloud.mqtt_url:
            # Here, not at the top: paho costs the idle gateway ~4 MiB, and with MQTT off no link is made.
            from edgefc.router.mqtt import MqttLink
        if url is not None:
            self.local = MqttLink(url, client_id=f"edgefc-{self.gateway_id}", on_message=self._inbound,
                                  on_message_nowait=self._inbound_nowait, persistent_session=True)  # fmt: skip
            self.router.mqtt_out = self.local
            await self.local.start()
        if self.config.cloud.mqtt_url:
            self.cloud = MqttLink(self.config.cloud.mqtt_url, client_id=f"edgefc-{self.gateway_id}-cloud",
                                  on_message=self._inbound, on_message_nowait=self._inbound_nowait,
                                  source_type="cloud", persistent_session=True)  # fmt: skip
            self.router.cloud_out = self.cloud
            await self.cloud.start()
        await self.router.start()
        await self.timers.start()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.timers.close()
        with contextlib.suppress(Exception):
            await self.router.close()
        for link in (self.local, self.cloud):
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.close()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        await asyncio.to_thread(self.queue.close)

    def check(self, manifest: Manifest) -> list[str]:
        """Problems of a manifest that only this gateway's messaging setup can see."""
        problems = []
        for i, route in enumerate(manifest.routes):
            kind = route.parsed_target.kind
            if kind is TargetKind.MQTT and self.config.mqtt.mode is BrokerMode.OFF:
                problems.append(f"routes[{i}].target: {route.target!r} needs MQTT, but mqtt.broker is off on this gateway")
            if kind is TargetKind.CLOUD and not self.config.cloud.mqtt_url:
                problems.append(f"routes[{i}].target: 'cloud' needs cloud.mqtt_url in the gateway configuration")
        return problems

    def apply(self, manifest: Manifest) -> None:
        """Take the routes and schedules of a newly applied deployment."""
        table = RouteTable(manifest.routes)
        self.router.replace_table(table)
        self._routes_known.set()
        if self.local is not None:
            self.local.set_subscriptions(table.filters_for("mqtt"))
        if self.cloud is not None:
            self.cloud.set_subscriptions(table.filters_for("cloud"))
        timers = {}
        for fn in manifest.functions:
            schedule = fn.parsed_schedule
            if schedule is not None:
                timers[fn.name] = (schedule, fn.schedule_payload)
        self.timers.set_timers(timers)

    async def _inbound(self, message: Message) -> None:
        """A message from the local or cloud broker; waits for the first route table (order is kept: waiters
        resume in arrival order, and each takes its place in the router before its next await)."""
        if not self._routes_known.is_set():
            await self._routes_known.wait()
        await self.router.publish(message)

    def _inbound_nowait(self, message: Message) -> bool:
        """``_inbound`` at once for a message with only QoS 0 deliveries; False (nothing done) otherwise."""
        return self._routes_known.is_set() and self.router.publish_nowait(message)

    async def publish(self, topic: str, payload: bytes, qos: int, source_type: str, source_id: str) -> str:
        """Put a message into the router; with qos 1 it is durable when this returns. Raises ValidationError, QueueFull."""
        problem = validate_topic(topic)
        if problem:
            raise ValidationError([f"topic: {problem}"])
        if qos not in (0, 1):
            raise ValidationError([f"qos: must be 0 or 1, got {qos!r}"])
        message = Message(topic=topic, payload=payload, source_type=SourceType(source_type), source_id=source_id, qos=qos)
        await self.router.publish(message)
        return message.id

    async def _deliver(self, function: str, message: Message) -> None:
        if not self._routes_known.is_set():
            # Queued deliveries from before a restart wait for the restored deployment: its functions do not
            # exist yet, and a NotFound now would cost the message a retry (or make it a dead letter).
            await self._routes_known.wait()
        trigger = {"type": "message", "topic": message.topic, "source": f"{message.source_type}:{message.source_id}"}
        try:
            await self._invoke(function, message.to_event(), trigger)
        except FunctionError as exc:
            raise RuntimeError(f"{exc.type}: {exc.message}") from exc
        except Busy as exc:
            # A full queue (max_queue) means "not now", not "this message fails": wait, spend no retry.
            raise Unavailable(exc.message) from exc
        except Unavailable:
            raise

    async def _fire(self, function: str, event: bytes) -> None:
        await self._invoke_async(function, event, {"type": "timer"})

    def stats(self) -> dict[str, Any]:
        return {
            "broker": self.config.mqtt.broker if self.config.mqtt.mode is not BrokerMode.OFF else "off",
            "connected": bool(self.local and self.local.connected),
            "cloud_connected": bool(self.cloud and self.cloud.connected),
            "note": self.mqtt_note or None,
            "router": self.router.stats(),
            "timer_lateness_ms": self.timers.lateness(),
        }
