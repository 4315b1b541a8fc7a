"""Topic filters and route tables: MQTT matching semantics, route syntax, dedupe of targets."""

from __future__ import annotations

import base64
import json

import pytest

from edgefc.config.routes import RouteSpec
from edgefc.router.message import Message, SourceType
from edgefc.router.routes import Route, RouteTable, validate_source, validate_target
from edgefc.router.topics import covers, matches, validate_filter, validate_topic

MATCHES = [
    ("a/b/c", "a/b/c", True),
    ("a/b/c", "a/b", False),
    ("a/+/c", "a/x/c", True),
    ("a/+/c", "a/x/y/c", False),
    ("a/+", "a/", True),  # an empty level is a level
    ("+/+", "/x", True),
    ("+", "/x", False),
    ("a/#", "a", True),  # '#' includes the parent
    ("a/#", "a/b/c", True),
    ("a/#", "ab", False),
    ("#", "a/b", True),
    ("#", "/a", True),
    ("#", "$SYS/broker/uptime", False),  # wildcards at the start never match $-topics
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/+/uptime", "$SYS/broker/uptime", True),
    ("/sys/+/+/thing/event/property/post", "/sys/pk1/sensor-1/thing/event/property/post", True),
    ("/sys/+/+/thing/event/property/post", "/sys/pk1/sensor-1/thing/event/alarm/post", False),
    ("A/b", "a/b", False),  # case-sensitive
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matches_follows_mqtt_semantics(topic_filter: str, topic: str, expected: bool) -> None:
    assert validate_filter(topic_filter) is None
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize("bad", ["a/#/b", "+x", "a/b#", "a+/b", "#/a", "", "a\x00b"])
def test_malformed_filters_are_named(bad: str) -> None:
    assert validate_filter(bad) is not None


@pytest.mark.parametrize("bad", ["a/+", "a/#", "", "a\x00"])
def test_topic_names_reject_wildcards(bad: str) -> None:
    assert validate_topic(bad) is not None
    assert validate_topic("/sys/pk/dn/thing/event/property/post") is None


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("#", "a/b", True),
        ("a/#", "a/+/c", True),
        ("a/+/c", "a/b/c", True),
        ("a/b/c", "a/+/c", False),
        ("a/+", "+/b", False),
        ("+/#", "#", False),
        ("#", "$SYS/x", False),
        ("a/#", "a", True),
    ],
)
def test_covers(wide: str, narrow: str, expected: bool) -> None:
    assert covers(wide, narrow) is expected


def test_source_and_target_syntax() -> None:
    for good in [
        "any",
        "mqtt",
        "cloud",
        "api",
        "function:alarm",
        "device:/pk1/+",
        "device:/pk1/dn-1",
        "device:#",
        "device:/pk1/#",
    ]:
        assert validate_source(good) is None, good
    for bad in [
        "devices",
        "function:",
        "function:Bad.Name",
        "device:pk1/dn",
        "device:/pk1/+x",
        "timer",
        "mqtt:x",
    ]:
        assert validate_source(bad) is not None, bad
    for good in ["cloud", "function:alarm", "mqtt:siren/1"]:
        assert validate_target(good) is None, good
    for bad in ["mqtt:siren/+", "mqtt:", "function:", "cloud:x", "queue:x"]:
        assert validate_target(bad) is not None, bad


def _device(topic: str, dn: str = "sensor-1") -> Message:
    return Message(topic, b"{}", SourceType.DEVICE, f"/pk1/{dn}")


def test_route_table_delivers_each_target_once_at_the_highest_qos() -> None:
    table = RouteTable(
        [
            Route("all-to-alarm", "any", "#", "function:alarm", 0),
            Route("pk1-to-alarm", "device:/pk1/+", "/sys/#", "function:alarm", 1),
            Route("to-siren", "device:/pk1/sensor-1", "/sys/+/+/thing/event/property/post", "mqtt:siren", 0),
            Route("other-device", "device:/pk2/+", "#", "function:other", 1),
            Route("from-function", "function:alarm", "#", "cloud", 1),
        ]
    )
    deliveries = table.match(_device("/sys/pk1/sensor-1/thing/event/property/post"))
    assert [(d.target, d.qos, d.routes) for d in deliveries] == [
        ("function:alarm", 1, ("all-to-alarm", "pk1-to-alarm")),
        ("mqtt:siren", 0, ("to-siren",)),
    ]
    other = table.match(_device("/sys/pk1/sensor-2/thing/event/property/post", "sensor-2"))
    assert [d.target for d in other] == ["function:alarm"]
    from_function = table.match(Message("alerts/1", b"x", SourceType.FUNCTION, "alarm"))
    assert [(d.target, d.qos) for d in from_function] == [("function:alarm", 0), ("cloud", 1)]
    assert table.match(Message("alerts/1", b"x", SourceType.FUNCTION, "report")) == (
        table.match(Message("alerts/1", b"x", SourceType.API, "api"))
    )


def test_route_table_subscribes_to_a_minimal_filter_set() -> None:
    table = RouteTable(
        [
            Route("a", "mqtt", "sensors/+/temp", "function:f"),
            Route("b", "mqtt", "sensors/#", "function:g"),
            Route("c", "any", "alerts/+", "function:f"),
            Route("d", "mqtt", "+/x", "function:f"),
            Route("e", "cloud", "down/#", "function:f"),
            Route("f", "api", "api/#", "function:f"),
        ]
    )
    assert table.filters_for("mqtt") == ["+/x", "alerts/+", "sensors/#"]
    assert table.filters_for("cloud") == ["alerts/+", "down/#"]


def test_route_table_refuses_invalid_routes() -> None:
    with pytest.raises(ValueError, match="route 'bad'"):
        RouteTable([Route("bad", "mqtt", "a/#/b", "function:f")])
    with pytest.raises(ValueError, match="qos"):
        RouteTable([Route("bad", "mqtt", "a", "function:f", 2)])


def test_route_table_accepts_the_manifest_route_model() -> None:
    spec = RouteSpec(name="r", source="device:/pk1/+", topic="/sys/#", target="function:alarm", qos=1)
    assert RouteTable([spec]).match(_device("/sys/pk1/sensor-1/x"))[0].qos == 1


def test_message_event_is_the_contract_shape() -> None:
    text = json.loads(Message("t/1", "héllo".encode(), SourceType.DEVICE, "/pk/dn").to_event())
    assert text == {"topic": "t/1", "payload": "héllo", "source": {"type": "device", "id": "/pk/dn"}}
    raw = bytes([0xFF, 0x00, 0x80])
    binary = json.loads(Message("t/2", raw, SourceType.MQTT).to_event())
    assert binary["payloadEncoding"] == "base64" and base64.b64decode(binary["payload"]) == raw
    assert binary["source"] == {"type": "mqtt", "id": ""}
    assert json.loads(Message("t", b"", SourceType.API).to_event())["source"] == {"type": "api", "id": "api"}
    with pytest.raises(ValueError):
        Message("t", b"", SourceType.API, qos=2)
