"""The router: matches each message against the route table and delivers it to every target once.

QoS 1 deliveries are committed to the durable queue before ``publish`` returns; QoS 0 ones go to a bounded
in-memory queue per target. One *lane* (a task) per target delivers in order: durable messages first, then
memory ones. A durable message leaves the queue only once the target took it (the function returned, the
broker sent its PUBACK); a failure retries it with backoff (holding back the messages behind it, which keeps
the order) until it becomes a dead letter. ``Unavailable`` is not a failure of the message but an absent
target (the cloud link is down, the function cannot take events now): the lane waits for it with capped,
jittered backoff without spending the message's retries, so an hour-long uplink outage dead-letters nothing.

The lanes live in the router's task group. A lane whose loop raises (a bug, a broken queue file) is logged
and started again after a backoff, so its target never silently stops receiving.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from edgefc.backoff import Backoff
from edgefc.errors import NotFound, Unavailable
from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue, FailOutcome
from edgefc.router.routes import Delivery, RouteTable, Target, TargetKind

if TYPE_CHECKING:  # paho is imported only when a link is made (gateway/messaging.py): ~4 MiB with MQTT off
    from edgefc.router.mqtt import MqttLink

log = logging.getLogger("edgefc.router")

_PAUSE_MIN = 0.05
_PAUSE_MAX = 5.0
QOS0_WINDOW = 32  # QoS 0 deliveries in flight per target

DeliverFunction = Callable[[str, Message], Awaitable[None]]


def _ignore_routed(route: str) -> None:
    return None


def _ignore_dropped(route: str, reason: str) -> None:
    return None


class Router:
    """Routes messages to functions, the local broker and the cloud; see the module docstring."""

    def __init__(
        self,
        table: RouteTable,
        *,
        queue: DurableQueue,
        deliver_function: DeliverFunction,
        mqtt_out: MqttLink | None = None,
        cloud_out: MqttLink | None = None,
        memory_queue_size: int = 1000,
        on_routed: Callable[[str], None] = _ignore_routed,
        on_dropped: Callable[[str, str], None] = _ignore_dropped,
        cloud_topic_prefix: str = "",
        lease_batch: int = 64,
    ) -> None:
        self.table = table
        self.queue = queue
        self.deliver_function = deliver_function
        self.mqtt_out = mqtt_out
        self.cloud_out = cloud_out
        self.memory_queue_size = memory_queue_size
        self.on_routed = on_routed
        self.on_dropped = on_dropped
        self.cloud_topic_prefix = cloud_topic_prefix
        self.lease_batch = lease_batch
        self._lanes: dict[Target, _Lane] = {}
        self._running = False
        self._group: asyncio.TaskGroup | None = None
        self._owner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering, beginning with whatever the durable queue still holds from before.

        Raises ValueError when the durable queue names a target that is not one (a corrupt queue file).
        """
        ready = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own_lanes(ready), name="router-lanes")
        await ready
        self._running = True
        for target in (await self.queue.astats())["targets"]:
            self._lane(Target.parse(target)).wake.set()

    async def _own_lanes(self, ready: asyncio.Future[None]) -> None:
        """Hold the task group every lane runs in until ``close`` cancels it."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            ready.set_result(None)
            await asyncio.Event().wait()

    async def close(self) -> None:
        """Stop every lane; messages being delivered stay in the durable queue (QoS 0 ones are dropped)."""
        self._running = False
        self._lanes = {}
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.cancel()
            await asyncio.shield(asyncio.gather(owner, return_exceptions=True))
        self._group = None

    def replace_table(self, table: RouteTable) -> None:
        """Switch to a new route table (a redeploy); queued deliveries still go to their targets."""
        self.table = table

    async def publish(self, message: Message) -> None:
        """Route one message: returns once every QoS 1 delivery of it is durably queued.

        Raises QueueFull when the durable queue is over its limit (then no QoS 1 delivery of this message
        was accepted; QoS 0 ones, at most once anyway, may have been) and Unavailable after ``close``.
        """
        if not self._running:
            raise Unavailable("the router is not running")
        if message.redelivered and self.queue.seen_inbound(message.id):
            return  # the broker's second copy of a message whose deliveries are committed already
        deliveries = self._deliveries(message)
        # QoS 0 first and without an await, so a later message cannot overtake an earlier one on its way in.
        self._offer_qos0(message, deliveries)
        durable = [d for d in deliveries if d.qos == 1]
        if durable:
            await self.queue.aput_many([(str(d.target), message) for d in durable])
            for delivery in durable:
                self._count_routed(delivery)
                self._lane(delivery.target).wake.set()

    def publish_nowait(self, message: Message) -> bool:
        """Route a message that has only QoS 0 deliveries at once and return True; for one with a QoS 1
        delivery (or while not running) do nothing and return False: that takes ``publish``."""
        if not self._running:
            return False
        deliveries = self._deliveries(message)
        for delivery in deliveries:
            if delivery.qos:
                return False
        self._offer_qos0(message, deliveries)
        return True

    def _deliveries(self, message: Message) -> tuple[Delivery, ...]:
        deliveries = self.table.match(message)
        if message.source_type is SourceType.MQTT:
            # A message that came from the broker is never sent back to the very same topic there.
            own = Target(TargetKind.MQTT, message.topic)
            deliveries = tuple(d for d in deliveries if d.target != own)
        return deliveries

    def _offer_qos0(self, message: Message, deliveries: tuple[Delivery, ...]) -> None:
        for delivery in deliveries:
            if delivery.qos == 0:
                self._count_routed(delivery)
                lane = self._lane(delivery.target)
                if not lane.offer(message, delivery.routes[0]):
                    self.on_dropped(delivery.routes[0], "queue_full")
                lane.wake.set()

    def _count_routed(self, delivery: Delivery) -> None:
        for route in delivery.routes:
            self.on_routed(route)

    async def replay(self, deadletter_id: int) -> int:
        """Move a dead letter back into its target's queue and wake that target; returns the new queue id.

        Raises NotFound for an unknown dead-letter id.
        """
        new_id = await self.queue.areplay(deadletter_id)
        target = await asyncio.to_thread(self.queue.target_of, new_id)
        if target is not None and self._running:
            self._lane(Target.parse(target)).wake.set()
        return new_id

    def stats(self) -> dict[str, Any]:
        """Per target: QoS 0 messages waiting, delivered, failed and dropped counts."""
        return {str(target): lane.stats() for target, lane in sorted(self._lanes.items(), key=lambda i: str(i[0]))}

    def _lane(self, target: Target) -> _Lane:
        lane = self._lanes.get(target)
        if lane is None:
            if self._group is None:
                raise Unavailable("the router is not running")
            lane = self._lanes[target] = _Lane(self, target, self._group)
        return lane

    def _link(self, target: Target) -> MqttLink:
        link = self.mqtt_out if target.kind is TargetKind.MQTT else self.cloud_out
        if link is None:
            if target.kind is TargetKind.MQTT:
                raise NotFound("this gateway has no MQTT broker (mqtt.broker is off)")
            raise NotFound("no cloud broker configured (cloud.mqtt_url)")
        return link

    def _topic(self, target: Target, message: Message) -> str:
        return target.name if target.kind is TargetKind.MQTT else self.cloud_topic(message.topic)

    async def send(self, target: Target, message: Message, qos: int) -> None:
        """Hand one message to one target; raises whatever the target raised when it did not take it."""
        if target.kind is TargetKind.FUNCTION:
            await self.deliver_function(target.name, message)
        else:
            await self._link(target).publish(
                self._topic(target, message), message.payload, qos, message.id if qos else None
            )

    def send_burst(self, target: Target, memory: collections.deque[tuple[Message, str]], counts: dict[str, int]
                   ) -> bool:  # fmt: skip
        """Publish every QoS 0 delivery waiting in ``memory`` to a broker target at once (counted in
        ``counts``); paho only queues them, and the link writes them in one burst after this loop step.
        False, leaving ``memory`` as it is, for a target that needs an await (a function): the caller sends
        those one by one with ``send``."""
        if target.kind is TargetKind.FUNCTION:
            return False
        while memory:
            message, route = memory.popleft()
            try:
                self._link(target).publish_nowait(self._topic(target, message), message.payload)
                counts["delivered"] += 1
            except Exception as exc:
                counts["failed"] += 1
                self.on_dropped(route, "delivery_failed")
                log.debug("QoS 0 delivery to %s failed: %s", target, exc)
        return True

    def cloud_topic(self, topic: str) -> str:
        """The upstream topic of a message: ``topic_prefix/topic`` (just ``topic`` without a prefix)."""
        if not self.cloud_topic_prefix:
            return topic
        return self.cloud_topic_prefix.rstrip("/") + "/" + topic.lstrip("/")


class _Lane:
    """The delivery task of one target, with its bounded QoS 0 queue."""

    def __init__(self, router: Router, target: Target, group: asyncio.TaskGroup) -> None:
        self.router = router
        self.target = target
        self.key = str(target)  # the durable queue's name for it
        self.memory: collections.deque[tuple[Message, str]] = collections.deque()
        self.wake = asyncio.Event()
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0, "dead_lettered": 0, "unavailable": 0,
                       "restarts": 0}  # fmt: skip
        self.pause = Backoff(_PAUSE_MIN, _PAUSE_MAX)  # the wait while the target is unavailable
        self.window = asyncio.Semaphore(QOS0_WINDOW)
        self.group = group
        self.task = group.create_task(self._supervise(), name=f"router-lane:{target}")

    async def _supervise(self) -> None:
        """Run the lane; when its loop raises, log it and start it again (a dead lane would starve its target)."""
        restart = Backoff(_PAUSE_MIN, _PAUSE_MAX)
        while True:
            try:
                await self._run()
            except Exception:
                self.counts["restarts"] += 1
                log.exception("router lane %s failed; restarting it", self.target)
                self.router.queue.release_all(self.key)
                await asyncio.sleep(restart.next())

    def offer(self, message: Message, route: str) -> bool:
        """Queue a QoS 0 delivery; False when the memory queue is full (the caller counts the drop)."""
        if len(self.memory) >= self.router.memory_queue_size:
            self.counts["dropped"] += 1
            return False
        self.memory.append((message, route))
        return True

    def stats(self) -> dict[str, int]:
        return {"memory_depth": len(self.memory), **self.counts}

    async def _run(self) -> None:
        queue = self.router.queue
        loop = asyncio.get_running_loop()
        # The durable queue of this target was empty (or its head in backoff until ``idle_until``) at queue
        # version ``idle_version``: until the queue changes or that time comes there is nothing to lease, so
        # QoS 0 messages go out without a lease (a thread hop and a SELECT) each.
        idle_version, idle_until = -1, 0.0
        while True:
            self.wake.clear()  # before looking, so a publish that lands meanwhile is not missed
            if queue.version != idle_version or loop.time() >= idle_until:
                version = queue.version  # read before the lease: a write committed after it shows as a change
                batch, wait = await queue.alease(self.key, self.router.lease_batch)
                if batch:
                    idle_version = -1
                    await self._deliver_durable(batch)
                    continue
                idle_version = version
                idle_until = math.inf if wait is None else loop.time() + wait
            if self.memory:
                if self.router.send_burst(self.target, self.memory, self.counts):
                    continue  # QoS 0 to a broker: paho's publish does not block, no task needed
                message, route = self.memory.popleft()
                # QoS 0 deliveries are pipelined: each starts in order (a function's queue and the broker keep
                # that order), up to WINDOW in flight, instead of waiting for the previous one to finish.
                await self.window.acquire()
                self.group.create_task(self._send_qos0(message, route), name=f"qos0:{self.target}")
                continue
            if idle_until == math.inf:
                await self.wake.wait()
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, idle_until - loop.time()))
            except TimeoutError:
                pass  # the head message's backoff is over

    async def _send_qos0(self, message: Message, route: str) -> None:
        try:
            await self.router.send(self.target, message, 0)
            self.counts["delivered"] += 1
        except Exception as exc:
            self.counts["failed"] += 1
            self.router.on_dropped(route, "delivery_failed")
            log.debug("QoS 0 delivery to %s failed: %s", self.target, exc)
        finally:
            self.window.release()

    async def _deliver_durable(self, batch: list[Any]) -> None:
        if self.target.kind is TargetKind.FUNCTION:
            await self._deliver_in_turn(batch)
        else:
            await self._deliver_pipelined(batch)

    async def _deliver_pipelined(self, batch: list[Any]) -> None:
        """A broker target: the whole batch goes out at once (paho keeps the order on the wire) and each message
        is settled by its own PUBACK. One publish per round trip would cap a distant cloud broker at 1/RTT."""
        queue = self.router.queue
        settled: set[int] = set()
        try:
            outcomes = await asyncio.gather(
                *(self.router.send(self.target, item.message, 1) for item in batch), return_exceptions=True
            )
            delivered = [item for item, outcome in zip(batch, outcomes, strict=True) if outcome is None]
            if delivered:
                self.pause.reset()
                self.counts["delivered"] += len(delivered)
                await asyncio.gather(*(queue.aack(item.id) for item in delivered))
                settled.update(item.id for item in delivered)
            unavailable = None
            for item, outcome in zip(batch, outcomes, strict=True):
                if outcome is None or isinstance(outcome, Unavailable | asyncio.CancelledError):
                    unavailable = unavailable or outcome
                    continue
                assert isinstance(outcome, BaseException)
                self.counts["failed"] += 1
                await self._failed(item, outcome)
                settled.add(item.id)
            if isinstance(unavailable, Unavailable):
                self.counts["unavailable"] += 1
                queue.release([item.id for item in batch if item.id not in settled])
                delay = self.pause.next()
                log.debug("target %s unavailable, retrying in %.2fs: %s", self.target, delay, unavailable)
                await asyncio.sleep(delay)
        finally:
            queue.release([item.id for item in batch if item.id not in settled])

    async def _failed(self, item: Any, exc: BaseException) -> None:
        outcome = await self.router.queue.afail(item.id, f"{type(exc).__name__}: {exc}")
        if outcome is FailOutcome.DEAD:
            self.counts["dead_lettered"] += 1
            log.warning("message %s to %s is a dead letter: %s", item.message.id, self.target, exc)

    async def _deliver_in_turn(self, batch: list[Any]) -> None:
        """A function: one event after the other, so a failing one holds back those behind it (order)."""
        queue = self.router.queue
        acks: list[asyncio.Task[None]] = []
        pending = [item.id for item in batch]
        try:
            for item in batch:
                try:
                    await self.router.send(self.target, item.message, 1)
                except Unavailable as exc:
                    self.counts["unavailable"] += 1
                    delay = self.pause.next()
                    log.debug("target %s unavailable, retrying in %.2fs: %s", self.target, delay, exc)
                    await asyncio.sleep(delay)
                    return
                except Exception as exc:
                    self.counts["failed"] += 1
                    queue.release(pending[1:])
                    pending = []
                    await self._failed(item, exc)
                    return
                pending.pop(0)
                self.pause.reset()
                self.counts["delivered"] += 1
                # Acks are grouped into one commit per batch; they are awaited before the next lease.
                acks.append(asyncio.create_task(queue.aack(item.id)))
        finally:
            queue.release(pending)
            if acks:
                await asyncio.gather(*acks)
