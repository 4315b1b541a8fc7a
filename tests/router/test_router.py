"""The router end to end with real Mosquitto brokers: devices, functions, MQTT out, the cloud, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edgefc.router.broker import ManagedBroker
from edgefc.router.message import Message, SourceType
from edgefc.router.routes import Route
from tests.router.helpers import wait_async, wait_for
from tests.router.rig import Rig, device, listener


@pytest.fixture
async def closing() -> Any:
    """Things a test opened (rigs, links), closed at teardown even when the test failed."""
    opened: list[Any] = []
    yield opened
    for thing in reversed(opened):
        await thing.close()


def _unique(items: list[bytes]) -> list[bytes]:
    """First occurrences in order: QoS 1 is at least once, so a retried message may arrive twice."""
    seen: set[bytes] = set()
    return [i for i in items if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


async def test_device_to_function_to_mqtt_out(
    tmp_path: Path, broker: ManagedBroker, closing: list[Any]
) -> None:
    rig: Rig
    calls: list[Message] = []

    async def alarm(name: str, message: Message) -> None:
        calls.append(message)
        reading = json.loads(message.to_event())
        if float(reading["payload"]) > 30:
            await rig.router.publish(Message("alerts/temp", message.payload, SourceType.FUNCTION, name, 1))

    rig = Rig(
        tmp_path,
        [
            Route("readings", "mqtt", "sensors/+/temp", "function:alarm", 1),
            Route("siren", "function:alarm", "alerts/#", "mqtt:siren/1", 1),
        ],
        alarm,
        local_url=broker.url,
    )
    closing.append(rig)
    await rig.start()
    siren, heard = await listener(broker.url, "siren/1")
    closing.append(siren)
    sensor = await device(broker.url)
    closing.append(sensor)
    for value in ["20", "31", "25", "40", "35"]:
        await sensor.publish("sensors/s1/temp", value.encode(), 1)
    await wait_for(lambda: len(heard) >= 3, 10, "three alerts at the siren")
    assert [m.payload for m in heard] == [b"31", b"40", b"35"]
    assert [m.payload for m in calls] == [b"20", b"31", b"25", b"40", b"35"]
    assert calls[0].source_type is SourceType.MQTT and calls[0].topic == "sensors/s1/temp"
    assert rig.routed == {"readings": 5, "siren": 3}
    await wait_async(lambda: _empty(rig), 5, "the durable queue to drain")


async def _empty(rig: Rig) -> bool:
    return (await rig.queue.astats())["depth"] == 0


async def test_fan_out_reaches_three_targets_once_each(
    tmp_path: Path, broker: ManagedBroker, closing: list[Any]
) -> None:
    got: dict[str, list[bytes]] = {"a": [], "b": []}

    async def deliver(name: str, message: Message) -> None:
        got[name].append(message.payload)

    rig = Rig(
        tmp_path,
        [
            Route("to-a", "api", "fan/#", "function:a", 1),
            Route("to-a-again", "any", "fan/+", "function:a", 0),  # same target: must not double-deliver
            Route("to-b", "api", "fan/#", "function:b", 0),
            Route("to-mqtt", "api", "fan/#", "mqtt:out/fan", 0),
        ],
        deliver,
        local_url=broker.url,
    )
    closing.append(rig)
    await rig.start()
    out, heard = await listener(broker.url, "out/#")
    closing.append(out)
    for n in range(20):
        await rig.router.publish(Message("fan/x", b"%d" % n, SourceType.API, "api"))
    expected = [b"%d" % n for n in range(20)]
    await wait_for(lambda: len(got["a"]) >= 20 and len(got["b"]) >= 20 and len(heard) >= 20, 10, "fan-out")
    await asyncio.sleep(0.2)  # give a duplicate, if one were coming, time to show up before counting
    assert got["a"] == expected and got["b"] == expected and [m.payload for m in heard] == expected
    assert rig.routed == {"to-a": 20, "to-a-again": 20, "to-b": 20, "to-mqtt": 20}


async def test_cloud_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, broker: ManagedBroker, cloud_broker: ManagedBroker, closing: list[Any]
) -> None:
    async def unused(name: str, message: Message) -> None:
        raise AssertionError("no function route here")

    rig = Rig(
        tmp_path,
        [Route("up", "api", "telemetry/#", "cloud", 1)],
        unused,
        local_url=broker.url,
        cloud_url=cloud_broker.url,
    )
    closing.append(rig)
    await rig.start()
    assert rig.cloud is not None
    # The cloud side keeps a persistent session, so it gets what was sent while it was down.
    upstream, heard = await listener(cloud_broker.url, "gw1/telemetry/#", persistent=True)
    closing.append(upstream)
    await rig.router.publish(Message("telemetry/t", b"0", SourceType.API, "api", 1))
    await wait_for(lambda: len(heard) == 1, 10, "the first message upstream")
    await cloud_broker.stop()
    await wait_for(lambda: not rig.cloud.connected, 10, "the router to see the cloud gone")
    for n in range(1, 60):
        await rig.router.publish(Message("telemetry/t", b"%d" % n, SourceType.API, "api", 1))
    stats = await rig.queue.astats()
    assert stats["targets"] == {"cloud": 59} and len(heard) == 1
    # Longer than the retry budget (3): an absent uplink must not turn messages into dead letters.
    await wait_for(lambda: rig.router.stats()["cloud"]["unavailable"] >= 5, 10, "several attempts while down")
    await cloud_broker.start()
    await wait_for(lambda: len(_unique([m.payload for m in heard])) >= 60, 20, "all 60 upstream")
    assert _unique([m.payload for m in heard]) == [b"%d" % n for n in range(60)]
    assert all(m.topic == "gw1/telemetry/t" for m in heard)
    assert (await rig.queue.astats())["deadletters"] == 0
    await wait_async(lambda: _empty(rig), 5, "the durable queue to drain")


async def test_failing_target_ends_in_dead_letters_and_replay_delivers(
    tmp_path: Path, closing: list[Any]
) -> None:
    fixed = False
    delivered: list[bytes] = []

    async def flaky(name: str, message: Message) -> None:
        if not fixed:
            raise RuntimeError("handler bug")
        delivered.append(message.payload)

    rig = Rig(tmp_path, [Route("r", "api", "#", "function:f", 1)], flaky, max_retries=2)
    closing.append(rig)
    await rig.start()
    for n in range(3):
        await rig.router.publish(Message("t", b"%d" % n, SourceType.API, "api"))
    await wait_async(lambda: _dead(rig, 3), 10, "three dead letters")
    letters = await rig.queue.adeadletters()
    assert [(d.message.payload, d.attempts) for d in letters] == [(b"0", 3), (b"1", 3), (b"2", 3)]
    assert "handler bug" in letters[0].error and delivered == []
    fixed = True
    for letter in letters:
        await rig.router.replay(letter.id)
    await wait_for(lambda: len(delivered) == 3, 10, "the replayed messages")
    assert delivered == [b"0", b"1", b"2"]
    assert (await rig.queue.astats())["deadletters"] == 0


async def _dead(rig: Rig, n: int) -> bool:
    return (await rig.queue.astats())["deadletters"] >= n


async def test_qos0_overflow_is_counted_as_dropped(tmp_path: Path, closing: list[Any]) -> None:
    gate = asyncio.Event()
    delivered: list[bytes] = []

    async def slow(name: str, message: Message) -> None:
        await gate.wait()
        delivered.append(message.payload)

    rig = Rig(tmp_path, [Route("r", "api", "#", "function:f", 0)], slow, memory_queue_size=5)
    closing.append(rig)
    await rig.start()
    await rig.router.publish(Message("t", b"first", SourceType.API, "api"))
    await wait_for(
        lambda: rig.router.stats()["function:f"]["memory_depth"] == 0, 5, "the first to be in delivery"
    )
    for n in range(20):
        await rig.router.publish(Message("t", b"%d" % n, SourceType.API, "api"))
    assert rig.dropped == {("r", "queue_full"): 15}
    gate.set()
    await wait_for(lambda: len(delivered) == 6, 5, "the queued ones")
    assert delivered == [b"first", b"0", b"1", b"2", b"3", b"4"]


async def test_messages_from_mqtt_are_not_sent_back_to_their_own_topic(
    tmp_path: Path, broker: ManagedBroker, closing: list[Any]
) -> None:
    seen: list[bytes] = []

    async def count(name: str, message: Message) -> None:
        seen.append(message.payload)

    rig = Rig(
        tmp_path,
        [
            Route("echo", "mqtt", "loop/#", "mqtt:loop/t", 0),
            Route("count", "mqtt", "loop/#", "function:count", 0),
        ],
        count,
        local_url=broker.url,
    )
    closing.append(rig)
    await rig.start()
    sensor = await device(broker.url)
    closing.append(sensor)
    await sensor.publish("loop/t", b"once", 1)
    await sensor.publish("loop/other", b"echoed", 1)  # goes out on loop/t once, comes back, stops there
    await wait_for(lambda: len(seen) >= 3, 5, "the sentinel")
    await sensor.publish("loop/sentinel", b"end", 1)
    await wait_for(lambda: b"end" in seen, 5, "the sentinel")
    assert sorted(seen) == sorted([b"once", b"echoed", b"echoed", b"end"])
    assert rig.routed == {"echo": 2, "count": 4}  # the two loop-backs are not routed


async def test_mqtt_target_without_broker_ends_in_dead_letters(tmp_path: Path, closing: list[Any]) -> None:
    async def unused(name: str, message: Message) -> None:
        return None

    rig = Rig(tmp_path, [Route("r", "api", "#", "mqtt:out", 1)], unused, max_retries=1)
    closing.append(rig)
    await rig.start()
    await rig.router.publish(Message("t", b"x", SourceType.API, "api"))
    await wait_async(lambda: _dead(rig, 1), 5, "a dead letter")
    [letter] = await rig.queue.adeadletters()
    assert "has no MQTT broker" in letter.error
