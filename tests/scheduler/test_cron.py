"""Schedules: the three cron dialects users bring, and their next firing times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from edgefc.scheduler.cron import ScheduleKind, parse_duration, parse_schedule

T0 = datetime(2024, 1, 1, 0, 0, 7, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("*/5 * * * *", ScheduleKind.CRON, datetime(2024, 1, 1, 0, 5, tzinfo=UTC)),
        ("0 */5 * * * *", ScheduleKind.CRON_SECONDS, datetime(2024, 1, 1, 0, 5, tzinfo=UTC)),
        ("*/10 * * * * *", ScheduleKind.CRON_SECONDS, datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)),
        ("0 0 12 * * ?", ScheduleKind.CRON_SECONDS, datetime(2024, 1, 1, 12, tzinfo=UTC)),
        ("0 9 * * TUE", ScheduleKind.CRON, datetime(2024, 1, 2, 9, tzinfo=UTC)),
        ("@daily", ScheduleKind.CRON, datetime(2024, 1, 2, tzinfo=UTC)),
        ("@every 10s", ScheduleKind.EVERY, datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)),
        ("@every 1m30s", ScheduleKind.EVERY, datetime(2024, 1, 1, 0, 1, 30, tzinfo=UTC)),
        ("CRON_TZ=Asia/Shanghai 0 8 * * *", ScheduleKind.CRON, datetime(2024, 1, 2, 0, 0, tzinfo=UTC)),
        ("CRON_TZ=Europe/Berlin @every 2h", ScheduleKind.EVERY, datetime(2024, 1, 1, 2, tzinfo=UTC)),
    ],
)
def test_next_after(text: str, kind: ScheduleKind, expected: datetime) -> None:
    schedule = parse_schedule(text)
    assert schedule.kind is kind
    assert schedule.next_after(T0) == expected
    assert schedule.next_after(T0).tzinfo is UTC


def test_next_is_strictly_after_and_accepts_other_zones() -> None:
    schedule = parse_schedule("*/5 * * * *")
    on_the_dot = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert schedule.next_after(on_the_dot) == datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    beijing = on_the_dot.astimezone(timezone(timedelta(hours=8)))
    assert schedule.next_after(beijing) == datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    every = parse_schedule("@every 10s")
    assert every.next_after(datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)) == datetime(2024, 1, 1, 0, 0, 20, tzinfo=UTC)


def test_local_time_follows_daylight_saving() -> None:
    schedule = parse_schedule("CRON_TZ=Europe/Berlin 0 8 * * *")
    winter = schedule.next_after(datetime(2024, 1, 15, tzinfo=UTC))
    summer = schedule.next_after(datetime(2024, 7, 15, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (7, 6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("* * * *", "has 4 field(s)"),
        ("* * * * * * *", "has 7 field(s)"),
        ("61 * * * *", "has a value out of range"),
        ("a b c d e", "is not valid cron"),
        ("*/0 * * * *", "is not valid cron"),
        ("0 0 30 2 *", "never fires"),
        ("H * * * *", "hashed (H) and random (R) fields are not supported"),
        ("@every 0s", "too short"),
        ("@every", "needs a duration"),
        ("@every 10", "'10' is not a duration"),
        ("@every 400d", "too long"),
        ("@fortnightly", "unknown schedule '@fortnightly'"),
        ("CRON_TZ=Mars/Olympus 0 8 * * *", "unknown time zone 'Mars/Olympus'"),
        ("CRON_TZ=Europe/Berlin", "no schedule after it"),
    ],
)
def test_bad_schedules_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert message in str(caught.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_schedule("@hourly").next_after(datetime(2024, 1, 1))


def test_durations() -> None:
    assert parse_duration("1h2m3s") == timedelta(hours=1, minutes=2, seconds=3)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    with pytest.raises(ValueError):
        parse_duration("1x")
