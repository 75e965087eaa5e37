"""A feed's condition (alertd.health) as a table, and which feeds a reader hears about in a digest."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from alertd.health import census, judge, reader_notices
from alertd.records import FeedEvent, FeedState

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
URL = "https://feeds.test/a.xml"
OK = FeedState(URL, "A", first_success_at=NOW - timedelta(days=9), last_success_at=NOW - timedelta(minutes=9))

ROWS = [
    # (case, state) → (condition, since, error class, attempts, target, in trouble)
    ("unknown to the store", None, ("new", None, None, 0, None, False)),
    ("configured, never polled", FeedState(URL, "A"), ("new", None, None, 0, None, False)),
    ("last poll succeeded", OK, ("ok", OK.last_success_at, None, 0, None, False)),
    (
        "failing since its last success",
        replace(OK, consecutive_failures=3, last_error_at=NOW, last_error_class="timeout"),
        ("failing", OK.last_success_at, "timeout", 3, None, True),
    ),
    (
        "never worked, failing since its first error",
        FeedState(URL, "A", consecutive_failures=2, last_error_at=NOW, last_error_class="dns_error"),
        ("failing", NOW, "dns_error", 2, None, True),
    ),
    (
        "gone",
        replace(OK, gone=True, consecutive_failures=1, last_error_at=NOW, last_error_class="gone"),
        ("gone", NOW, "gone", 1, None, True),
    ),
    (
        "moved and healthy",
        replace(OK, effective_url="https://new.test/a.xml", moved_at=NOW - timedelta(days=1)),
        ("moved", NOW - timedelta(days=1), None, 0, "https://new.test/a.xml", False),
    ),
    (
        "moved, then failing: failing wins",
        replace(OK, effective_url="https://new.test/a.xml", consecutive_failures=1, last_error_at=NOW),
        ("failing", OK.last_success_at, None, 1, None, True),
    ),
]


@pytest.mark.parametrize(("state", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_judge(state: FeedState | None, expected: tuple[object, ...]) -> None:
    verdict = judge(state)
    assert expected == (
        verdict.condition,
        verdict.since,
        verdict.error_class,
        verdict.attempts,
        verdict.target,
        verdict.in_trouble,
    )


def test_census_counts_every_condition() -> None:
    verdicts = [judge(None), judge(OK), judge(OK), judge(replace(OK, gone=True))]
    assert {"new": 1, "ok": 2, "moved": 0, "failing": 0, "gone": 1} == census(verdicts)


def failing(name: str, since: timedelta, *, ever_worked: bool = True) -> FeedState:
    return FeedState(
        f"https://feeds.test/{name}",
        name,
        last_success_at=NOW - since if ever_worked else None,
        last_error_at=NOW,
        last_error_class="http_5xx",
        consecutive_failures=4,
    )


def test_a_reader_hears_of_long_failures_gone_feeds_and_recent_events_of_their_feeds_only() -> None:
    states = [
        failing("long", timedelta(hours=7)),
        failing("short", timedelta(minutes=30)),
        failing("never", timedelta(0), ever_worked=False),
        replace(OK, url="https://feeds.test/gone", name="gone", gone=True, last_error_at=NOW),
        failing("unconfigured", timedelta(days=3)),
        replace(OK, url="https://feeds.test/moved", name="moved", effective_url="https://new.test/feed"),
    ]
    configured = {s.url for s in states if s.name != "unconfigured"}
    events = [
        FeedEvent("https://feeds.test/moved", "moved", NOW, "moved", "moved permanently"),
        FeedEvent("https://feeds.test/unconfigured", "unconfigured", NOW, "flood", "a flood"),
    ]

    notices = reader_notices(states, configured, events, failing_after=timedelta(hours=6), now=NOW)

    assert [("long", "failing"), ("never", "failing"), ("gone", "gone"), ("moved", "moved")] == [
        (n.name, n.kind) for n in notices
    ]
    assert "https://new.test/feed" == notices[-1].target
    assert (4, "http_5xx") == (notices[0].attempts, notices[0].error_class)
