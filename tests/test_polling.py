"""The poll decider as a table: what the feed looked like, what the fetch brought → what the poll decides.

Every branch of :func:`alertd.polling.decide_poll` is a row here, with no server, no store and no clock: the
loopback tests (tests/test_poll.py) prove the same through real polls.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alertd.config import FeedConfig, PollConfig
from alertd.models import FetchResult, FetchStatus, Item
from alertd.polling import (
    FLOOD_NOTICE_EVERY,
    Identified,
    Observation,
    PollPolicy,
    after_reload,
    decide_poll,
    job_time,
    must_parse,
    redirect_progress,
    skip,
    wants_arrivals,
)
from alertd.records import FeedState

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
URL = "https://feeds.test/bfm.xml"
MIN, MAX = timedelta(minutes=15), timedelta(hours=24)
FEED = FeedConfig(URL, "BFM")
POLICY = PollPolicy.of(PollConfig())
SEEDED = FeedState(
    URL,
    "BFM",
    etag='"v1"',
    body_hash="old",
    first_success_at=NOW - timedelta(days=3),
    last_success_at=NOW - timedelta(minutes=15),
    next_poll_at=NOW,
)


def fetched(status: FetchStatus = FetchStatus.OK, **fields: Any) -> FetchResult:
    return FetchResult(url=URL, status=status, **fields)


def items(count: int, *, published: datetime | None = None, prefix: str = "n") -> tuple[Item, ...]:
    return tuple(
        Item(
            f"{prefix}{i}",
            URL,
            "BFM",
            f"t{i}",
            "s",
            "<p>s</p>",
            f"https://x.test/{prefix}{i}",
            f"x.test/{prefix}{i}",
            published,
        )
        for i in range(count)
    )


def parsed(new: int, total: int, **fields: Any) -> Identified:
    return Identified(
        total=total, new_items=items(new, **fields), seen_keys=tuple(f"k{i}" for i in range(total - new))
    )


def decide(state: FeedState = SEEDED, result: FetchResult | None = None, **seen: Any) -> Any:
    """Decide one poll of FEED at NOW under the default policy (a fetched 200 unless ``result`` says)."""
    observation = Observation(FEED, state, result or fetched(body=b"<rss/>"), **seen)
    return decide_poll(observation, POLICY, NOW, random.Random(7))


# --- outcome → status, failures, gone, when next -------------------------------------------------------------

ROWS = [
    # (case, state, fetch result, observation extras, status, consecutive failures, gone, next poll in)
    ("410 gone", SEEDED, fetched(FetchStatus.GONE, http_status=410), {}, "gone", 1, True, None),
    (
        "5xx, first failure: one interval ±10 %",
        SEEDED,
        fetched(FetchStatus.ERROR, error_class="http_5xx", error="HTTP 503"),
        {},
        "error",
        1,
        False,
        (MIN * 0.9, MIN * 1.1),
    ),
    (
        "5xx, fourth failure: 8 intervals ±10 %",
        replace(SEEDED, consecutive_failures=3),
        fetched(FetchStatus.ERROR, error_class="http_5xx", error="HTTP 503"),
        {},
        "error",
        4,
        False,
        (MIN * 8 * 0.9, MIN * 8 * 1.1),
    ),
    (
        "200 failures in a row: capped at a day, no overflow",
        replace(SEEDED, consecutive_failures=199),
        fetched(FetchStatus.ERROR, error_class="timeout", error="timed out"),
        {},
        "error",
        200,
        False,
        (MAX * 0.9, MAX),
    ),
    (
        "429 Retry-After 2 h (delta-seconds)",
        SEEDED,
        fetched(FetchStatus.ERROR, error_class="rate_limited", retry_after=timedelta(hours=2)),
        {},
        "error",
        1,
        False,
        (timedelta(hours=2), timedelta(hours=2)),
    ),
    (
        "503 Retry-After as an HTTP-date 3 h ahead",
        SEEDED,
        fetched(FetchStatus.ERROR, error_class="rate_limited", retry_after=NOW + timedelta(hours=3)),
        {},
        "error",
        1,
        False,
        (timedelta(hours=3), timedelta(hours=3)),
    ),
    (
        "Retry-After of 5 s is clamped to a minute, the floor is the min interval",
        SEEDED,
        fetched(FetchStatus.ERROR, error_class="rate_limited", retry_after=timedelta(seconds=5)),
        {},
        "error",
        1,
        False,
        (MIN * 0.9, MIN * 1.1),
    ),
    (
        "not a feed: parse_error, backed off",
        SEEDED,
        None,
        {"body_hash": "new", "parse_error": "https://feeds.test/bfm.xml: not a feed"},
        "error",
        1,
        False,
        (MIN * 0.9, MIN * 1.1),
    ),
    (
        "304: a success, next poll at the interval",
        SEEDED,
        fetched(FetchStatus.NOT_MODIFIED),
        {},
        "not_modified",
        0,
        False,
        (MIN, MIN * 1.1),
    ),
    (
        "304 remembers the feed's <ttl> of 2 h",
        replace(SEEDED, ttl_minutes=120),
        fetched(FetchStatus.NOT_MODIFIED),
        {},
        "not_modified",
        0,
        False,
        (timedelta(minutes=108), timedelta(minutes=132)),
    ),
    (
        "the same bytes again: unchanged",
        SEEDED,
        None,
        {"body_hash": "old"},
        "unchanged",
        0,
        False,
        (MIN, MIN * 1.1),
    ),
    (
        "Cache-Control max-age 1 h stretches the interval",
        SEEDED,
        fetched(body=b"x", fresh_for=timedelta(hours=1)),
        {"body_hash": "old"},
        "unchanged",
        0,
        False,
        (timedelta(minutes=54), timedelta(minutes=66)),
    ),
    (
        "a failing feed recovers: failures reset",
        replace(SEEDED, consecutive_failures=5, last_error_class="timeout"),
        None,
        {"body_hash": "new", "identified": parsed(1, 10)},
        "ok",
        0,
        False,
        (MIN, MIN * 1.1),
    ),
    (
        "first poll, first_poll = seed: seeded",
        FeedState(URL, "BFM"),
        None,
        {"body_hash": "new", "identified": parsed(40, 40)},
        "seeded",
        0,
        False,
        (MIN, MIN * 1.1),
    ),
]


@pytest.mark.parametrize(
    ("state", "result", "extras", "status", "failures", "gone", "next_in"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_each_outcome_decides_status_failures_and_the_next_poll(
    state: FeedState,
    result: FetchResult | None,
    extras: dict[str, Any],
    status: str,
    failures: int,
    gone: bool,
    next_in: tuple[timedelta, timedelta] | None,
) -> None:
    intent = decide(state, result, **extras)

    assert status == intent.report.status
    assert intent.write is not None
    new = intent.write.feed
    assert (failures, gone) == (new.consecutive_failures, new.gone)
    if next_in is None:
        assert None is new.next_poll_at
    else:
        assert new.next_poll_at is not None
        assert next_in[0] <= new.next_poll_at - NOW <= next_in[1]


def test_a_failure_records_its_class_and_restarts_a_redirect_in_progress() -> None:
    state = replace(SEEDED, redirect_candidate="https://new.test/feed", redirect_count=2)
    intent = decide(state, fetched(FetchStatus.ERROR, error_class="tls_error", error="bad certificate"))

    assert intent.write is not None
    new = intent.write.feed
    assert ("tls_error", "bad certificate", NOW) == (new.last_error_class, new.last_error, new.last_error_at)
    assert (None, 0) == (new.redirect_candidate, new.redirect_count)
    assert [logging.WARNING] == [level for level, _ in intent.log]


def test_gone_says_so_in_the_log_at_error_level() -> None:
    intent = decide(SEEDED, fetched(FetchStatus.GONE, http_status=410))
    assert [logging.ERROR] == [level for level, _ in intent.log]
    assert ("gone", "HTTP 410 Gone") == (intent.report.error_class, intent.report.error)


def test_a_gone_feed_is_not_fetched_and_never_scheduled() -> None:
    gone = replace(SEEDED, gone=True)
    skipped = skip(FEED, gone)
    assert skipped is not None and "skipped" == skipped.report.status and skipped.write is None
    assert None is skip(FEED, SEEDED)
    assert None is job_time(gone, NOW, random.Random(1), after_poll=False, policy=POLICY)


# --- success: validators, seeding, alerting ----------------------------------------------------------------


def test_a_success_keeps_the_new_validators_and_body() -> None:
    result = fetched(body=b"x", etag='"v2"', last_modified="Wed, 25 Nov 2026 10:00:00 GMT")
    intent = decide(SEEDED, result, body_hash="new", identified=parsed(2, 10))
    assert intent.write is not None
    new = intent.write.feed
    assert ('"v2"', "Wed, 25 Nov 2026 10:00:00 GMT", "new", NOW) == (
        new.etag,
        new.last_modified,
        new.body_hash,
        new.last_success_at,
    )
    assert SEEDED.first_success_at == new.first_success_at


@pytest.mark.parametrize(
    ("first_poll", "status", "alertable"),
    [("seed", "seeded", 0), ("alert", "ok", 5)],
)
def test_the_first_poll_seeds_silently_unless_asked_to_alert(
    first_poll: str, status: str, alertable: int
) -> None:
    policy = PollPolicy.of(PollConfig(first_poll=first_poll))  # type: ignore[arg-type]
    intent = decide_poll(
        Observation(FEED, FeedState(URL, "BFM"), fetched(body=b"x"), body_hash="h", identified=parsed(5, 5)),
        policy,
        NOW,
        random.Random(1),
    )
    assert (status, alertable) == (intent.report.status, len(intent.alertable))
    assert intent.write is not None
    assert (NOW, 5) == (intent.write.feed.first_success_at, len(intent.write.new_items))


def test_new_items_of_an_established_feed_all_alert() -> None:
    intent = decide(SEEDED, None, body_hash="new", identified=parsed(3, 20))
    assert ("ok", 3, 3) == (intent.report.status, intent.report.new_items, len(intent.alertable))
    assert intent.write is not None
    assert 17 == len(intent.write.seen_keys)


# --- the flood guard -----------------------------------------------------------------------------------------


def flood(state: FeedState = SEEDED) -> Any:
    fresh = items(3, published=NOW - timedelta(minutes=5), prefix="fresh")
    old = items(25, published=NOW - timedelta(days=30), prefix="old")
    identified = Identified(total=30, new_items=fresh + old, seen_keys=("k0", "k1"))
    return decide(state, None, body_hash="new", identified=identified)


def test_a_flood_alerts_only_recent_items_and_records_one_notice() -> None:
    intent = flood()
    assert {"fresh0", "fresh1", "fresh2"} == {item.key for item in intent.alertable}
    assert intent.report.notice is not None and "28 new items in one poll" in intent.report.notice
    assert intent.write is not None
    assert ["flood"] == [kind for kind, _ in intent.write.events]
    assert NOW == intent.write.feed.flood_notice_at
    assert 28 == len(intent.write.new_items), "every item is recorded as seen"


@pytest.mark.parametrize(
    ("last_notice", "recorded"),
    [(NOW - timedelta(hours=3), False), (NOW - FLOOD_NOTICE_EVERY, True), (None, True)],
    ids=["notice 3 h ago", "notice a day ago", "never"],
)
def test_a_flood_notice_is_stored_at_most_once_a_day(last_notice: datetime | None, recorded: bool) -> None:
    intent = flood(replace(SEEDED, flood_notice_at=last_notice))
    assert intent.write is not None
    assert recorded == bool(intent.write.events)
    assert intent.report.notice is not None, "each flood is still reported"


def test_a_flood_on_the_first_poll_is_a_seeding_not_a_flood() -> None:
    intent = flood(FeedState(URL, "BFM"))
    assert ("seeded", None, ()) == (intent.report.status, intent.report.notice, intent.alertable)


# --- permanent redirects ---------------------------------------------------------------------------------------

REDIRECTS = [
    # (candidate so far, count so far, this poll's permanent target) → (candidate, count, move to)
    (None, 0, None, (None, 0, None)),
    (None, 0, "https://new.test/feed", ("https://new.test/feed", 1, None)),
    ("https://new.test/feed", 1, "https://new.test/feed", ("https://new.test/feed", 2, None)),
    ("https://new.test/feed", 2, "https://new.test/feed", (None, 0, "https://new.test/feed")),
    ("https://new.test/feed", 2, "https://other.test/feed", ("https://other.test/feed", 1, None)),
    ("https://new.test/feed", 2, None, (None, 0, None)),
]


@pytest.mark.parametrize(("candidate", "count", "target", "expected"), REDIRECTS)
def test_redirect_progress(
    candidate: str | None, count: int, target: str | None, expected: tuple[str | None, int, str | None]
) -> None:
    state = replace(SEEDED, redirect_candidate=candidate, redirect_count=count)
    assert expected == redirect_progress(state, target)


def test_the_third_permanent_redirect_moves_the_feed_and_says_so() -> None:
    state = replace(SEEDED, redirect_candidate="https://new.test/feed", redirect_count=2)
    intent = decide(state, fetched(body=b"x", permanent_redirect="https://new.test/feed"), body_hash="old")
    assert intent.write is not None
    new = intent.write.feed
    assert ("https://new.test/feed", NOW, None, 0) == (
        new.effective_url,
        new.moved_at,
        new.redirect_candidate,
        new.redirect_count,
    )
    assert ["moved"] == [kind for kind, _ in intent.write.events]


# --- the posting rate, and what to load -----------------------------------------------------------------------


def test_a_feed_posting_every_hour_is_polled_every_hour() -> None:
    arrivals = [NOW - timedelta(hours=h) for h in range(1, 11)]
    intent = decide(SEEDED, fetched(FetchStatus.NOT_MODIFIED), arrivals=arrivals)
    assert intent.write is not None and intent.write.feed.next_poll_at is not None
    assert timedelta(minutes=54) <= intent.write.feed.next_poll_at - NOW <= timedelta(minutes=66)


@pytest.mark.parametrize(
    ("feed", "state", "expected"),
    [
        (FEED, SEEDED, True),
        (FEED, FeedState(URL, "BFM"), False),
        (FeedConfig(URL, "BFM", interval=timedelta(hours=1)), SEEDED, False),
    ],
    ids=["adaptive", "never seeded", "fixed interval"],
)
def test_arrivals_are_loaded_only_for_adaptive_feeds(
    feed: FeedConfig, state: FeedState, expected: bool
) -> None:
    assert expected == wants_arrivals(feed, state)


@pytest.mark.parametrize(
    ("status", "digest", "expected"),
    [(FetchStatus.OK, "new", True), (FetchStatus.OK, "old", False), (FetchStatus.NOT_MODIFIED, "new", False)],
)
def test_only_new_bytes_are_parsed(status: FetchStatus, digest: str, expected: bool) -> None:
    assert expected == must_parse(SEEDED, fetched(status), digest)


# --- when the daemon runs the next poll --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_poll_at", "after_poll", "low", "high"),
    [
        (NOW + timedelta(minutes=7), False, timedelta(minutes=7), timedelta(minutes=7)),
        (None, False, timedelta(0), timedelta(seconds=10)),
        (NOW - timedelta(hours=1), False, timedelta(0), timedelta(seconds=10)),
        (NOW - timedelta(hours=1), True, MIN, MIN),
    ],
    ids=[
        "as decided",
        "never polled: soon, spread",
        "overdue after a stop: soon",
        "outcome not recorded: wait",
    ],
)
def test_job_time(next_poll_at: datetime | None, after_poll: bool, low: timedelta, high: timedelta) -> None:
    when = job_time(
        replace(SEEDED, next_poll_at=next_poll_at),
        NOW,
        random.Random(3),
        after_poll=after_poll,
        policy=POLICY,
    )
    assert when is not None
    assert low <= when - NOW <= high


def test_six_fresh_stories_at_once_all_alert_even_right_after_an_unchanged_poll() -> None:
    """A small feed posts six stories at once: a flood by count, but news by date (published minutes ago,
    after the feed's last news an hour ago); the byte-identical poll a minute earlier changes nothing."""
    state = replace(
        SEEDED,
        last_success_at=NOW - timedelta(minutes=1),
        last_new_at=NOW - timedelta(hours=1),
        consecutive_failures=0,
    )
    fresh = items(6, published=NOW - timedelta(minutes=4), prefix="fresh")
    intent = decide(
        state,
        None,
        body_hash="new",
        identified=Identified(total=10, new_items=fresh, seen_keys=("a", "b", "c", "d")),
    )
    assert 6 == len(intent.alertable)
    assert intent.write is not None and NOW == intent.write.feed.last_new_at


def test_a_flood_of_old_items_is_still_cut_at_the_last_news() -> None:
    state = replace(SEEDED, last_new_at=NOW - timedelta(hours=3))
    old = items(25, published=NOW - timedelta(hours=5), prefix="old")
    recent = items(2, published=NOW - timedelta(hours=2), prefix="recent")
    intent = decide(
        state, None, body_hash="new", identified=Identified(total=27, new_items=old + recent, seen_keys=())
    )
    assert {"recent0", "recent1"} == {item.key for item in intent.alertable}


# --- a reload that changes what decides the next poll ----------------------------------------------------------

HOURLY = PollPolicy.of(PollConfig(interval=timedelta(hours=1), min_interval=timedelta(minutes=1), jitter=0.0))
POLLED = replace(
    SEEDED, last_success_at=NOW - timedelta(minutes=10), next_poll_at=NOW + timedelta(minutes=50)
)


@pytest.mark.parametrize(
    ("state", "old", "new", "expected"),
    [
        (
            POLLED,
            (FEED, HOURLY),
            (FEED, replace(HOURLY, interval=timedelta(minutes=20))),
            NOW + timedelta(minutes=10),
        ),
        (POLLED, (FEED, HOURLY), (FEED, replace(HOURLY, interval=timedelta(minutes=5))), NOW),
        (
            POLLED,
            (FEED, HOURLY),
            (replace(FEED, interval=timedelta(hours=3)), HOURLY),
            NOW + timedelta(minutes=170),
        ),
        (
            POLLED,
            (FEED, HOURLY),
            (
                FEED,
                PollPolicy.of(
                    PollConfig(interval=timedelta(hours=1), min_interval=timedelta(hours=2), jitter=0.0)
                ),
            ),
            NOW + timedelta(minutes=110),
        ),
        (
            replace(POLLED, ttl_minutes=90),
            (FEED, HOURLY),
            (FEED, replace(HOURLY, interval=timedelta(minutes=20))),
            NOW + timedelta(minutes=80),
        ),
        (POLLED, (FEED, HOURLY), (replace(FEED, name="BFM Éco"), HOURLY), None),
        (
            replace(POLLED, consecutive_failures=2),
            (FEED, HOURLY),
            (FEED, replace(HOURLY, interval=timedelta(minutes=5))),
            None,
        ),
        (FeedState(URL, "BFM"), (FEED, HOURLY), (FEED, replace(HOURLY, interval=timedelta(minutes=5))), None),
        (
            replace(POLLED, gone=True),
            (FEED, HOURLY),
            (FEED, replace(HOURLY, interval=timedelta(minutes=5))),
            None,
        ),
    ],
    ids=[
        "interval lowered: from the last poll",
        "lowered below the time already waited: now",
        "the feed's own interval raised",
        "min_interval raised above the interval",
        "never below the feed's <ttl>",
        "only the name changed: as decided",
        "failing: its backoff stands",
        "never polled: its first poll is soon anyway",
        "gone: not polled",
    ],
)
def test_after_reload(
    state: FeedState,
    old: tuple[FeedConfig, PollPolicy],
    new: tuple[FeedConfig, PollPolicy],
    expected: datetime | None,
) -> None:
    assert after_reload(state, old, new, (), NOW, random.Random(1)) == expected
