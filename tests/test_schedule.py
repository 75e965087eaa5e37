"""Digest schedules: parsing, and firing exactly once a day across DST changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alertd.schedule import (
    BACKOFF_CAP,
    PollBounds,
    backoff,
    format_duration,
    next_digest_time,
    next_poll_time,
    parse_digest_schedule,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "kind", "hour", "minute", "weekday"),
    [
        ("immediate", "immediate", 0, 0, None),
        ("hourly", "hourly", 0, 0, None),
        ("daily 07:00", "daily", 7, 0, None),
        ("Daily 7:30", "daily", 7, 30, None),
        ("weekly mon 08:15", "weekly", 8, 15, 0),
        ("weekly dimanche 18:00", "weekly", 18, 0, 6),
        ("0 7,13 * * mon-fri", "cron", 0, 0, None),
    ],
)
def test_schedules_parse(text: str, kind: str, hour: int, minute: int, weekday: int | None) -> None:
    parsed = parse_digest_schedule(text)
    assert (kind, hour, minute, weekday) == (parsed.kind, parsed.hour, parsed.minute, parsed.weekday)


@pytest.mark.parametrize(
    "text", ["daily", "daily 24:00", "weekly 07:00", "weekly xyz 07:00", "every day", "* * *"]
)
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_digest_schedule(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("30s", 30), ("2h", 7200), ("1d", 86400), ("1w", 604800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert timedelta(seconds=seconds) == parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(900, "15m"), (86400, "1d"), (983, "16m23s"), (5400, "90m"), (90061, "1d1h"), (42, "42s")],
)
def test_durations_print_the_way_users_write_them(seconds: int, text: str) -> None:
    assert text == format_duration(timedelta(seconds=seconds))


@pytest.mark.parametrize("text", ["15", "m", "0m", "1.5h", "15 minutes", "-1m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def fire_times(schedule_text: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    schedule = parse_digest_schedule(schedule_text)
    tz = ZoneInfo(zone)
    times, moment = [], start
    while True:
        moment = next_digest_time(schedule, moment, tz)
        if moment >= end:
            return times
        times.append(moment)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Paris", datetime(2026, 3, 29)),
        ("Europe/Paris", datetime(2026, 10, 25)),
        ("Europe/Berlin", datetime(2026, 3, 29)),
        ("America/New_York", datetime(2026, 3, 8)),
        ("America/New_York", datetime(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize("wall", ["00:30", "02:30", "07:00", "23:59"])
def test_daily_digest_fires_exactly_once_on_dst_days(zone: str, day: datetime, wall: str) -> None:
    tz = ZoneInfo(zone)
    start = (day - timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)
    end = (day + timedelta(days=2)).replace(tzinfo=tz).astimezone(UTC)
    times = fire_times(f"daily {wall}", zone, start, end)
    local_days = [t.astimezone(tz).date() for t in times]
    assert [(day + timedelta(days=d)).date() for d in (-1, 0, 1)] == local_days


def test_daily_digest_keeps_local_wall_time_across_dst() -> None:
    times = fire_times(
        "daily 07:00", "Europe/Paris", datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    )
    assert [t.astimezone(ZoneInfo("Europe/Paris")).hour for t in times] == [7, 7, 7, 7]
    assert [t.hour for t in times] == [6, 6, 5, 5]


def test_weekly_digest_fires_once_a_week_on_its_day() -> None:
    zone = ZoneInfo("America/New_York")
    times = fire_times(
        "weekly sun 01:30",
        "America/New_York",
        datetime(2026, 10, 20, tzinfo=UTC),
        datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert [t.astimezone(zone).day for t in times] == [25, 1, 8, 15]
    assert all(t.astimezone(zone).weekday() == 6 for t in times)


def test_cron_schedule_follows_the_subscriber_zone() -> None:
    times = fire_times(
        "0 7 * * mon-fri",
        "Asia/Shanghai",
        datetime(2026, 11, 26, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert [t.isoformat() for t in times] == ["2026-11-26T23:00:00+00:00", "2026-11-29T23:00:00+00:00"]


def test_immediate_is_due_at_once_and_hourly_on_the_hour() -> None:
    now = datetime(2026, 11, 26, 6, 42, 10, tzinfo=UTC)
    assert now == next_digest_time(parse_digest_schedule("immediate"), now, ZoneInfo("UTC"))
    assert datetime(2026, 11, 26, 7, 0, tzinfo=UTC) == next_digest_time(
        parse_digest_schedule("hourly"), now, ZoneInfo("UTC")
    )


def test_poll_delay_stays_within_jitter() -> None:
    rng = random.Random(1)
    now, bounds = (
        datetime(2026, 11, 26, 7, 0, tzinfo=UTC),
        PollBounds(timedelta(minutes=1), timedelta(days=1)),
    )
    delays = [
        (next_poll_time(now, timedelta(minutes=10), bounds, 0.1, rng) - now).total_seconds()
        for _ in range(200)
    ]
    assert 540 <= min(delays) < max(delays) <= 660


def test_backoff_doubles_and_caps_at_a_day() -> None:
    rng = random.Random(2)
    delays = [
        backoff(n, timedelta(minutes=15), BACKOFF_CAP, rng=rng, jitter=0.1).total_seconds()
        for n in range(1, 12)
    ]
    assert 810 <= delays[0] <= 990
    assert 1620 <= delays[1] <= 1980
    assert max(delays) <= 86400
    assert delays[-1] >= 86400 * 0.9
