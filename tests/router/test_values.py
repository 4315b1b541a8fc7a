"""The value objects of routing: TopicFilter against paho's own matcher, Target parsing, a crashing lane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from edgefc.config.routes import RouteSpec
from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import Route, RouteTable, Target, TargetKind
from edgefc.router.topics import TopicFilter
from tests.router.helpers import wait_for

_LEVEL = st.sampled_from(["a", "b", "", "$SYS", "$x", "sensor-1", "ü"])
_FILTER_LEVEL = st.one_of(_LEVEL, st.just("+"))


@st.composite
def _filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_FILTER_LEVEL, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


_FILTERS = _filters().filter(bool)
_TOPICS = st.lists(_LEVEL, min_size=1, max_size=6).map("/".join).filter(bool)


@settings(max_examples=2000, deadline=None)
@given(_FILTERS, _TOPICS)
def test_topic_filter_matches_like_paho(text: str, topic: str) -> None:
    assert TopicFilter.parse(text).matches(topic) == topic_matches_sub(text, topic), (text, topic)


@settings(max_examples=500, deadline=None)
@given(_FILTERS, _FILTERS, _TOPICS)
def test_covers_implies_every_match(wide: str, narrow: str, topic: str) -> None:
    if TopicFilter.parse(wide).covers(TopicFilter.parse(narrow)) and topic_matches_sub(narrow, topic):
        assert topic_matches_sub(wide, topic), (wide, narrow, topic)


@pytest.mark.parametrize("bad", ["a/#/b", "a+", "", "x\x00"])
def test_topic_filter_refuses_bad_filters(bad: str) -> None:
    with pytest.raises(ValueError):
        TopicFilter.parse(bad)


def test_target_parses_once_and_prints_its_manifest_spelling() -> None:
    assert Target.parse("function:alarm") == Target(TargetKind.FUNCTION, "alarm")
    assert Target.parse("mqtt:siren/1") == Target(TargetKind.MQTT, "siren/1")
    assert Target.parse("cloud") == Target(TargetKind.CLOUD)
    for text in ("function:alarm", "mqtt:siren/1", "cloud"):
        assert str(Target.parse(text)) == text
    for bad in ("mqtt:a/+", "cloud:x", "queue:x", "function:"):
        with pytest.raises(ValueError, match="target|wildcard"):
            Target.parse(bad)
    spec = RouteSpec(name="r", source="mqtt", topic="a/+", target="mqtt:b", qos=1)
    assert spec.parsed_target == Target(TargetKind.MQTT, "b") and spec.topic_filter.matches("a/x")
    compiled = RouteTable([spec]).routes[0]
    assert compiled.target is spec.parsed_target and compiled.topic is spec.topic_filter  # carried, not re-parsed


async def test_a_crashing_lane_is_restarted_and_its_target_keeps_receiving(tmp_path: Path) -> None:
    """The durable queue's lease raises twice (a broken disk, a bug): the lane logs it, restarts, delivers."""
    queue = DurableQueue(tmp_path / "q.db", max_bytes=10_000_000, max_retries=3)
    got: list[bytes] = []

    async def deliver(name: str, message: Message) -> None:
        got.append(message.payload)

    failures = 2
    real_lease = queue.alease

    async def flaky_lease(target: str, limit: int = 64) -> tuple[list, float | None]:  # type: ignore[type-arg]
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("disk I/O error")
        return await real_lease(target, limit)

    queue.alease = flaky_lease  # type: ignore[method-assign]
    router = Router(RouteTable([Route("r", "api", "#", "function:sink", 1)]), queue=queue, deliver_function=deliver)
    await router.start()
    try:
        for n in range(3):
            await router.publish(Message("t", b"%d" % n, SourceType.API, "api", 1))
        await wait_for(lambda: got == [b"0", b"1", b"2"], 10, "every message after two lane crashes")
        assert router.stats()["function:sink"]["restarts"] == 2
    finally:
        await router.close()
        await asyncio.to_thread(queue.close)


def test_copies_a_broker_sends_again_share_one_id() -> None:
    from edgefc.router.message import redelivery_stable_id

    first = redelivery_stable_id("edgefc-gw1", 7, "dev/d1/temp", b"21.5")
    assert first == redelivery_stable_id("edgefc-gw1", 7, "dev/d1/temp", b"21.5")  # the redelivery
    assert len({first, redelivery_stable_id("edgefc-gw1", 8, "dev/d1/temp", b"21.5"),
                redelivery_stable_id("edgefc-gw1", 7, "dev/d1/temp", b"21.6"),
                redelivery_stable_id("edgefc-cloud", 7, "dev/d1/temp", b"21.5")}) == 4  # fmt: skip
