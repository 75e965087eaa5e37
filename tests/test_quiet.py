"""Quiet hours: parsing, windows crossing midnight, release times across DST; the subscriber options."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.config import load_config
from alertd.errors import ConfigError
from alertd.quiet import QuietHours, in_quiet_hours, parse_quiet_hours, release_time

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def test_parse_accepts_windows_and_refuses_nonsense() -> None:
    assert QuietHours(time(22, 0), time(7, 0)) == parse_quiet_hours("22:00-07:00")
    assert QuietHours(time(1, 30), time(6, 0)) == parse_quiet_hours(" 1:30 - 06:00 ")
    for bad in ("22-07", "25:00-07:00", "22:00-22:00", "22:60-07:00", "soon"):
        with pytest.raises(ValueError):
            parse_quiet_hours(bad)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-11-26 21:59", False),
        ("2026-11-26 22:00", True),
        ("2026-11-27 03:00", True),
        ("2026-11-27 07:00", False),
    ],
)
def test_a_window_crossing_midnight_contains_its_start_not_its_end(moment: str, inside: bool) -> None:
    assert inside == in_quiet_hours(parse_quiet_hours("22:00-07:00"), at(moment), PARIS)


@pytest.mark.parametrize(
    ("moment", "released"),
    [
        ("2026-11-26 21:00", "2026-11-26 21:00"),  # outside: at once
        ("2026-11-26 23:30", "2026-11-27 07:00"),  # before midnight: the next morning
        ("2026-11-27 02:00", "2026-11-27 07:00"),  # after midnight: the same morning
        ("2026-03-28 23:00", "2026-03-29 07:00"),  # spring-forward night is an hour shorter, same wall time
        ("2026-10-24 23:00", "2026-10-25 07:00"),  # fall-back night
    ],
)
def test_release_time_is_the_end_of_the_window_in_local_time(moment: str, released: str) -> None:
    window = parse_quiet_hours("22:00-07:00")

    assert at(released) == release_time(window, at(moment).astimezone(UTC), PARIS)


def test_a_window_ending_in_the_spring_forward_gap_releases_after_the_gap() -> None:
    window = parse_quiet_hours("01:00-02:30")  # 02:30 does not exist in Paris on 2026-03-29

    released = release_time(window, at("2026-03-29 01:30").astimezone(UTC), PARIS)

    assert at("2026-03-29 03:30") == released
    assert not in_quiet_hours(window, released, PARIS)


def test_subscriber_digest_options_are_validated_and_located(tmp_path: Path) -> None:
    path = tmp_path / "alertd.toml"
    path.write_text(
        textwrap.dedent(
            """
            [digest]
            debounce = "often"

            [[subscriber]]
            email = "me@example.org"
            schedule = "daily 07:00"
            quiet_hours = "22h-7h"
            max_items_per_topic = 0
            language = "de"
            """
        ).lstrip(),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    found = "\n".join(str(p) for p in caught.value.problems)
    assert "alertd.toml:2:1: digest.debounce: invalid duration 'often'" in found
    assert "subscriber[0].quiet_hours: expected a window like '22:00-07:00', got '22h-7h'" in found
    assert "subscriber[0].max_items_per_topic: must be between 1 and 1000, got 0" in found
    assert "subscriber[0].language: must be one of 'fr', 'en', got 'de'" in found


def test_subscriber_digest_options_default(tmp_path: Path) -> None:
    path = tmp_path / "alertd.toml"
    path.write_text('[[subscriber]]\nemail = "me@example.org"\nschedule = "daily 07:00"\n', encoding="utf-8")

    config = load_config(path)

    subscriber = config.subscribers[0]
    assert (None, 20, "fr") == (subscriber.quiet_hours, subscriber.max_items_per_topic, subscriber.language)
    assert (120.0, 6 * 3600.0) == (
        config.digest.debounce.total_seconds(),
        config.digest.feed_health_after.total_seconds(),
    )
