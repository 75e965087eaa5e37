"""When is a subscriber's next mail? The one decider (alertd.due) as a table: schedule, quiet hours, what is
pending, debounce, now → when the digest and the alerts are due."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alertd.config import SubscriberConfig
from alertd.due import next_mail
from alertd.quiet import parse_quiet_hours
from alertd.records import SubscriberState
from alertd.schedule import parse_digest_schedule

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=PARIS)  # a Thursday
DEBOUNCE = timedelta(minutes=2)


def subscriber(schedule: str, quiet: str | None = None) -> SubscriberConfig:
    return SubscriberConfig(
        email="marie@example.org",
        name="Marie",
        topics=None,
        schedule=parse_digest_schedule(schedule),
        timezone="Europe/Paris",
        quiet_hours=parse_quiet_hours(quiet) if quiet else None,
    )


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=PARIS)


ROWS = [
    # (case, schedule, quiet hours, last digest, digest pending, first alert match, now)
    #   → (digest at, alerts at, next at)
    (
        "daily, before 07:00 tomorrow",
        "daily 07:00",
        None,
        at(7),
        False,
        None,
        NOW,
        (at(7, day=27), None, at(7, day=27)),
    ),
    (
        "daily, missed this morning: due now",
        "daily 07:00",
        None,
        at(7, day=25),
        False,
        None,
        NOW,
        (NOW, None, NOW),
    ),
    (
        "daily 07:00 inside quiet hours 22:00-08:00: held to 08:00",
        "daily 07:00",
        "22:00-08:00",
        at(10),
        False,
        None,
        NOW,
        (at(8, day=27), None, at(8, day=27)),
    ),
    ("hourly, served at 10:00: 11:00", "hourly", None, at(10), False, None, NOW, (at(11), None, at(11))),
    (
        "hourly, served at 09:30: due at 10:00, now",
        "hourly",
        None,
        at(9, 30),
        False,
        None,
        NOW,
        (NOW, None, NOW),
    ),
    (
        "weekly mon 08:00",
        "weekly mon 08:00",
        None,
        at(9),
        False,
        None,
        NOW,
        (at(8, day=30), None, at(8, day=30)),
    ),
    ("immediate with matches pending: now", "immediate", None, at(9), True, None, NOW, (NOW, None, NOW)),
    (
        "immediate with nothing pending: on the next match",
        "immediate",
        None,
        at(9),
        False,
        None,
        NOW,
        (NOW, None, None),
    ),
    (
        "immediate during quiet hours: at their end",
        "immediate",
        "09:00-12:00",
        at(9),
        True,
        None,
        NOW,
        (at(12), None, at(12)),
    ),
    (
        "immediate gets no separate alerts",
        "immediate",
        None,
        at(9),
        True,
        at(9, 59),
        NOW,
        (NOW, None, NOW),
    ),
    (
        "daily, an alert match 1 min ago: debounced to 1 min from now",
        "daily 07:00",
        None,
        at(7),
        True,
        at(9, 59),
        NOW,
        (at(7, day=27), at(10, 1), at(10, 1)),
    ),
    (
        "daily, an alert match 10 min ago: due now",
        "daily 07:00",
        None,
        at(7),
        True,
        at(9, 50),
        NOW,
        (at(7, day=27), NOW, NOW),
    ),
    (
        "daily, an alert during quiet hours: at their end",
        "daily 07:00",
        "09:00-12:00",
        at(7),
        True,
        at(9, 50),
        NOW,
        (at(7, day=27), at(12), at(12)),
    ),
]


@pytest.mark.parametrize(
    ("schedule", "quiet", "last", "pending", "first_alert", "now", "expected"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_next_mail(
    schedule: str,
    quiet: str | None,
    last: datetime,
    pending: bool,
    first_alert: datetime | None,
    now: datetime,
    expected: tuple[datetime, datetime | None, datetime | None],
) -> None:
    plan = next_mail(
        subscriber(schedule, quiet),
        SubscriberState("marie@example.org", last, last),
        digest_pending=pending,
        first_alert_match=first_alert,
        debounce=DEBOUNCE,
        now=now,
    )
    assert expected == (plan.digest_at, plan.alerts_at, plan.next_at)


def test_due_means_at_or_before_now() -> None:
    plan = next_mail(
        subscriber("daily 07:00"),
        SubscriberState("marie@example.org", at(7, day=25), at(7, day=25)),
        digest_pending=False,
        first_alert_match=at(9, 59),
        debounce=DEBOUNCE,
        now=NOW,
    )
    assert (True, False) == (plan.digest_due(NOW), plan.alerts_due(NOW))
    assert plan.alerts_due(NOW + DEBOUNCE)
