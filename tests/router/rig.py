"""A router wired like the gateway wires it, for the end-to-end router tests."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgefc.router.message import Message
from edgefc.router.mqtt import MqttLink
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import Route, RouteTable

_ids = itertools.count()


class Rig:
    """Router + durable queue + links to a local (and optionally a cloud) broker, and counters."""

    def __init__(
        self,
        tmp: Path,
        routes: list[Route],
        deliver: Callable[[str, Message], Awaitable[None]],
        *,
        local_url: str | None = None,
        cloud_url: str | None = None,
        memory_queue_size: int = 1000,
        max_retries: int = 3,
    ) -> None:
        self.queue = DurableQueue(
            tmp / "queue.db",
            max_bytes=10_000_000,
            max_retries=max_retries,
            backoff_base=0.02,
            backoff_max=0.3,
        )
        self.routed: dict[str, int] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        self.table = RouteTable(routes)
        self.local = self._link(local_url, "mqtt") if local_url else None
        self.cloud = self._link(cloud_url, "cloud") if cloud_url else None
        self.router = Router(
            self.table,
            queue=self.queue,
            deliver_function=deliver,
            mqtt_out=self.local,
            cloud_out=self.cloud,
            memory_queue_size=memory_queue_size,
            on_routed=self._routed,
            on_dropped=self._dropped,
            cloud_topic_prefix="gw1",
        )

    def _link(self, url: str, kind: str) -> MqttLink:
        return MqttLink(
            url,
            client_id=f"edgefc-{kind}-{next(_ids)}",
            on_message=self._inbound,
            source_type=kind,
            backoff_min=0.05,
            backoff_max=0.3,
            publish_timeout=5,
        )

    async def _inbound(self, message: Message) -> None:
        await self.router.publish(message)

    def _routed(self, route: str) -> None:
        self.routed[route] = self.routed.get(route, 0) + 1

    def _dropped(self, route: str, reason: str) -> None:
        self.dropped[(route, reason)] = self.dropped.get((route, reason), 0) + 1

    async def start(self) -> None:
        await self.router.start()
        for link, kind in ((self.local, "mqtt"), (self.cloud, "cloud")):
            if link is not None:
                link.set_subscriptions(self.table.filters_for(kind))
                await link.start()
                assert await link.wait_subscribed(10), f"{kind} link did not connect and subscribe"

    async def close(self) -> None:
        await self.router.close()
        for link in (self.local, self.cloud):
            if link is not None:
                await link.close()
        self.queue.close()


async def listener(
    url: str, topic_filter: str, *, persistent: bool = False
) -> tuple[MqttLink, list[Message]]:
    """A plain MQTT subscriber (a siren, the cloud) that records what it receives."""
    received: list[Message] = []

    async def record(message: Message) -> None:
        received.append(message)

    link = MqttLink(
        url,
        client_id=f"listener-{next(_ids)}",
        on_message=record,
        persistent_session=persistent,
        backoff_min=0.05,
        backoff_max=0.3,
    )
    link.set_subscriptions([topic_filter])
    await link.start()
    assert await link.wait_subscribed(10), "listener did not subscribe"
    return link, received


async def device(url: str) -> MqttLink:
    """A device: an MQTT client that only publishes."""
    link = MqttLink(url, client_id=f"device-{next(_ids)}")
    await link.start()
    assert await link.wait_connected(10), "device did not connect"
    return link
