"""Time expressions of the log API."""

from __future__ import annotations

import pytest

from edgefc.errors import BadRequest
from edgefc.observe.timeexpr import format_time, parse_duration, parse_time

NOW = 1_714_532_400.0  # 2024-05-01T03:00:00Z


@pytest.mark.parametrize(
    ("text", "ago"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("8h", 28800), ("1h30m", 5400), ("250ms", 0.25),
     ("1.5h", 5400), (" 10M ", 600), ("now", 0)],
)  # fmt: skip
def test_relative(text: str, ago: float) -> None:
    assert parse_time(text, now=NOW) == pytest.approx(NOW - ago)


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T03:00:00Z", "2024-05-01T05:00:00+02:00", "2024-05-01T03:00:00", "2024-05-01 03:00:00.000Z"],
)
def test_rfc3339(text: str) -> None:
    assert parse_time(text, now=0) == NOW


def test_round_trip_of_returned_times() -> None:
    assert parse_time(format_time(NOW + 0.123456), now=0) == pytest.approx(NOW + 0.123456, abs=1e-6)
    assert format_time(NOW) == "2024-05-01T03:00:00.000000Z"


@pytest.mark.parametrize("text", ["", "yesterday", "10", "-5m", "10 minutes", "2024-13-01T00:00:00Z", "5x"])
def test_bad_text_names_the_parameter(text: str) -> None:
    with pytest.raises(BadRequest, match="^since: ") as info:
        parse_time(text, now=NOW, param="since")
    assert info.value.details == {"parameter": "since"}


def test_parse_duration() -> None:
    assert parse_duration("2h") == 7200
    assert parse_duration("soon") is None
