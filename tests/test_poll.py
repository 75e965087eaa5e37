"""Polling like a good citizen: ``pipeline.poll_feed`` against a real loopback server, a real store, a real
parser pool and the real httpx client, with time passed in (never slept).

Each test scripts the feed server, polls at chosen instants and checks what the store decided: the next poll
time, the backoff, the feed's health, which items were new and which alerted.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import random
import textwrap
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from alertd import pipeline, schedule
from alertd.config import MIN_RETENTION, FeedConfig, load_config
from alertd.models import Item, ParsedFeed
from alertd.parse import ParserPool
from alertd.pipeline import run_once
from alertd.responses import retry_after_hint
from alertd.runtime import open_runtime
from alertd.store import LAST_SEEN_RESOLUTION, Store
from alertd.watchlist import load_watchlist
from tests.feedserver import FeedServer, make_rss
from tests.storage import add_feed, record_failure, record_poll

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=15)

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu"]
"""


def write_config(tmp_path: Path, extra: str = "", feeds: Sequence[tuple[str, str]] = ()) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    entries = "".join(f'\n[[feed]]\nname = "{name}"\nurl = "{url}"\n' for name, url in feeds)
    path = tmp_path / "alertd.toml"
    path.write_text(
        textwrap.dedent(
            """
            [poll]
            timeout = "5s"
            """
        )
        + extra
        + entries,
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[pipeline.Runtime]:
    """A Runtime built exactly as the daemon builds it (runtime.open_runtime), with a seeded rng."""
    config = load_config(write_config(tmp_path))
    async with open_runtime(config, load_watchlist(config.watchlist), {}) as runtime:
        runtime.rng = random.Random(7)
        yield runtime


def feed(server: FeedServer, path: str, name: str = "BFM", interval: timedelta | None = None) -> FeedConfig:
    return FeedConfig(url=server.url(path), name=name, interval=interval)


def items(
    n: int, *, start: int = 0, scheme: str = "https", published: datetime | None = NOW
) -> list[dict[str, Any]]:
    return [
        {
            "title": f"Alibaba et les marques françaises, épisode {i}",
            "link": f"{scheme}://www.bfmtv.com/economie/alibaba-{i}.html",
            "guid": f"{scheme}://www.bfmtv.com/economie/alibaba-{i}.html",
            "lede": "Le géant chinois veut aider les enseignes françaises.",
            "pub_date": published,
        }
        for i in range(start, start + n)
    ]


class CountingParser:
    """A hand-written fake around the real ParserPool that counts parses."""

    def __init__(self, real: ParserPool) -> None:
        self.real = real
        self.calls = 0

    async def parse(self, body: bytes, content_type: str | None, url: str) -> ParsedFeed:
        self.calls += 1
        return await self.real.parse(body, content_type, url)


async def poll(rt: pipeline.Runtime, target: FeedConfig, now: datetime) -> pipeline.PollReport:
    return await pipeline.poll_feed(rt, target, now)


def state_of(rt: pipeline.Runtime, target: FeedConfig) -> Any:
    return rt.store.feed_state(target.url, target.name)


# --- rate limits and errors -----------------------------------------------------------------------------


async def test_retry_after_in_seconds_or_as_a_date_delays_only_that_feed(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    later = format_datetime(NOW + timedelta(hours=3), usegmt=True)
    feed_server.route("/a.xml", b"slow down", status=429, headers={"Retry-After": "7200"})
    feed_server.route("/b.xml", b"busy", status=503, headers={"Retry-After": later})
    feed_server.route("/c.xml", make_rss(items(3)))
    a, b, c = feed(feed_server, "/a.xml"), feed(feed_server, "/b.xml"), feed(feed_server, "/c.xml")

    reports = [await poll(rt, target, NOW) for target in (a, b, c)]

    assert [r.error_class for r in reports] == ["rate_limited", "rate_limited", None]
    assert state_of(rt, a).next_poll_at >= NOW + timedelta(seconds=7200)
    assert state_of(rt, b).next_poll_at >= NOW + timedelta(hours=3)
    healthy = state_of(rt, c)
    assert healthy.consecutive_failures == 0
    assert NOW + MIN <= healthy.next_poll_at <= NOW + MIN * 1.1


def test_retry_after_is_clamped_between_a_minute_and_a_day() -> None:
    def hint(value: str) -> timedelta | None:
        return schedule.retry_after(retry_after_hint(value), NOW)

    assert hint("5") == timedelta(seconds=60)
    assert hint("120") == timedelta(seconds=120)
    assert hint(str(30 * 86400)) == timedelta(hours=24)
    assert hint(format_datetime(NOW + timedelta(minutes=10), usegmt=True)) == timedelta(minutes=10)
    assert hint(format_datetime(NOW - timedelta(hours=1), usegmt=True)) == timedelta(seconds=60)
    assert hint("tomorrow-ish") is None


async def test_server_errors_back_off_doubling_never_disable_and_recover(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/flaky.xml", b"oops", status=500)
    target = feed(feed_server, "/flaky.xml")
    now, delays = NOW, []
    for _ in range(5):
        report = await poll(rt, target, now)
        assert report.error_class == "http_5xx"
        due = state_of(rt, target).next_poll_at
        delays.append((due - now).total_seconds())
        now = due
    for before, after in itertools.pairwise(delays):
        assert 2 * 0.9 / 1.1 <= after / before <= 2 * 1.1 / 0.9
    assert delays[0] >= MIN.total_seconds()
    assert state_of(rt, target).consecutive_failures == 5

    for _ in range(10):  # far beyond the cap: still polled, never more than a day apart
        await poll(rt, target, now)
        due = state_of(rt, target).next_poll_at
        assert due - now <= timedelta(hours=24)
        now = due
    assert not state_of(rt, target).gone

    feed_server.route("/flaky.xml", make_rss(items(2)))
    assert (await poll(rt, target, now)).status == "seeded"
    recovered = state_of(rt, target)
    assert (recovered.consecutive_failures, recovered.last_error_class) == (0, "http_5xx")
    assert recovered.next_poll_at - now <= MIN * 1.1


async def test_a_document_that_does_not_parse_fails_that_feed_with_backoff(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/html.xml", b"<html><body>not a feed</body></html>", content_type="text/html")
    target = feed(feed_server, "/html.xml")
    report = await poll(rt, target, NOW)
    assert (report.status, report.error_class) == ("error", "parse_error")
    assert state_of(rt, target).next_poll_at >= NOW + MIN


async def test_gone_feed_stops_being_polled(rt: pipeline.Runtime, feed_server: FeedServer) -> None:
    feed_server.route("/gone.xml", b"", status=410)
    target = feed(feed_server, "/gone.xml")
    assert (await poll(rt, target, NOW)).status == "gone"
    state = state_of(rt, target)
    assert state.gone
    assert state.next_poll_at is None
    assert (await poll(rt, target, NOW + timedelta(days=1))).status == "skipped"
    assert feed_server.hits("/gone.xml") == 1


# --- redirects ------------------------------------------------------------------------------------------


async def test_three_consecutive_permanent_redirects_that_parse_move_the_feed(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/new.xml", make_rss(items(2)))
    feed_server.redirect("/old.xml", "/new.xml", status=301)
    target = feed(feed_server, "/old.xml")
    for k in range(2):
        await poll(rt, target, NOW + k * MIN)
        assert state_of(rt, target).effective_url is None
        assert state_of(rt, target).redirect_count == k + 1
    await poll(rt, target, NOW + 2 * MIN)
    moved = state_of(rt, target)
    assert moved.effective_url == feed_server.url("/new.xml")
    assert moved.moved_at == NOW + 2 * MIN
    assert [e.kind for e in rt.store.feed_events(NOW)] == ["moved"]

    await poll(rt, target, NOW + 3 * MIN)
    assert feed_server.hits("/old.xml") == 3, "once moved, the new address is fetched directly"
    assert feed_server.hits("/new.xml") == 4


async def test_an_interrupted_run_of_permanent_redirects_starts_over(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/new.xml", make_rss(items(2)))
    feed_server.route("/direct.xml", make_rss(items(2)))
    feed_server.redirect("/old.xml", "/new.xml", status=301)
    target = feed(feed_server, "/old.xml")
    await poll(rt, target, NOW)
    await poll(rt, target, NOW + MIN)
    feed_server.route("/old.xml", make_rss(items(2)))  # once served directly again
    await poll(rt, target, NOW + 2 * MIN)
    feed_server.redirect("/old.xml", "/new.xml", status=301)
    await poll(rt, target, NOW + 3 * MIN)
    state = state_of(rt, target)
    assert (state.effective_url, state.redirect_count) == (None, 1)


async def test_temporary_redirects_never_move_the_feed(rt: pipeline.Runtime, feed_server: FeedServer) -> None:
    feed_server.route("/new.xml", make_rss(items(2)))
    feed_server.redirect("/old.xml", "/new.xml", status=302)
    feed_server.redirect("/old307.xml", "/new.xml", status=307)
    for path in ("/old.xml", "/old307.xml"):
        target = feed(feed_server, path)
        for k in range(4):
            await poll(rt, target, NOW + k * MIN)
        assert (state_of(rt, target).effective_url, state_of(rt, target).redirect_count) == (None, 0)


async def test_a_permanent_redirect_to_something_unparsable_never_counts(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/broken.xml", b"<html>parked domain</html>", content_type="text/html")
    feed_server.redirect("/old.xml", "/broken.xml", status=301)
    target = feed(feed_server, "/old.xml")
    now = NOW
    for _ in range(4):
        await poll(rt, target, now)
        now = state_of(rt, target).next_poll_at
    assert (state_of(rt, target).effective_url, state_of(rt, target).redirect_count) == (None, 0)


# --- no work twice --------------------------------------------------------------------------------------


async def test_not_modified_and_identical_bodies_cost_no_parse(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    counting = CountingParser(rt.parser)
    rt.parser = counting  # type: ignore[assignment]
    feed_server.route("/etag.xml", make_rss(items(3)), etag='"v1"')
    feed_server.route("/same.xml", make_rss(items(3)))
    with_etag, without = feed(feed_server, "/etag.xml"), feed(feed_server, "/same.xml")
    await poll(rt, with_etag, NOW)
    await poll(rt, without, NOW)
    assert counting.calls == 2

    assert (await poll(rt, with_etag, NOW + MIN)).status == "not_modified"
    assert (await poll(rt, without, NOW + MIN)).status == "unchanged"
    assert counting.calls == 2
    assert feed_server.requests("/etag.xml")[-1].headers["If-None-Match"] == '"v1"'


# --- identity and dedup ---------------------------------------------------------------------------------


async def test_items_without_guid_or_link_and_repeated_guids_are_not_new_twice(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    odd = [
        {"title": "Alibaba sans lien ni guid", "lede": "Premier."},
        {"title": "Temu sans lien ni guid", "lede": "Second."},
        {"title": "Alibaba A", "guid": "same", "link": "https://x.test/a"},
        {"title": "Alibaba B", "guid": "same", "link": "https://x.test/b"},
        {"title": "Alibaba C", "guid": "same"},
        {"title": "Alibaba D", "guid": "same"},
    ]
    feed_server.route("/odd.xml", make_rss(odd))
    target = feed(feed_server, "/odd.xml")
    first = await poll(rt, target, NOW)
    assert (first.status, first.new_items) == ("seeded", 6)
    feed_server.route("/odd.xml", make_rss([*odd, {"title": "Alibaba tout neuf", "guid": "fresh"}]))
    second = await poll(rt, target, NOW + MIN)
    assert (second.new_items, second.matches) == (1, 1)


async def test_guids_rotating_from_http_to_https_alert_nothing(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/rot.xml", make_rss(items(40, scheme="http")))
    target = feed(feed_server, "/rot.xml")
    await poll(rt, target, NOW)
    feed_server.route("/rot.xml", make_rss(items(40, scheme="https")))
    report = await poll(rt, target, NOW + MIN)
    assert (report.new_items, report.matches) == (0, 0)
    assert len(rt.store.feed_events(NOW, kind="flood")) <= 1
    assert rt.store.counts()["items"] == 40


async def test_an_item_that_leaves_and_comes_back_is_not_new_again(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    target = feed(feed_server, "/back.xml")
    feed_server.route("/back.xml", make_rss(items(5)))
    await poll(rt, target, NOW)
    feed_server.route("/back.xml", make_rss(items(4)))
    await poll(rt, target, NOW + MIN)
    feed_server.route("/back.xml", make_rss(items(5)))
    report = await poll(rt, target, NOW + 2 * MIN)
    assert (report.new_items, report.matches) == (0, 0)


async def test_a_flood_alerts_only_the_novel_items_and_reports_once(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    target = feed(feed_server, "/flood.xml")
    feed_server.route("/flood.xml", make_rss(items(10, published=NOW - timedelta(hours=1))))
    await poll(rt, target, NOW)
    at = NOW + MIN
    backlog = items(28, start=100, published=NOW - timedelta(days=30))
    fresh = items(2, start=500, published=at - timedelta(minutes=5))
    feed_server.route("/flood.xml", make_rss([*fresh, *backlog, *items(10, published=NOW)]))

    report = await poll(rt, target, at)

    assert (report.new_items, report.matches) == (30, 2)
    assert report.notice is not None and "30 new items" in report.notice
    events = rt.store.feed_events(NOW, kind="flood")
    assert len(events) == 1
    pending = rt.store.pending_matches("reader@example.org", ["chinese-ecommerce"], NOW)
    assert {m.item.link for m in pending} == {i["link"] for i in fresh}

    feed_server.route("/flood.xml", make_rss(items(30, start=1000, published=NOW - timedelta(days=30))))
    again = await poll(rt, target, at + MIN)
    assert (again.new_items, again.matches) == (30, 0)
    assert len(rt.store.feed_events(NOW, kind="flood")) == 1, "one stored notice per feed per day"


async def test_a_5000_item_feed_is_seeded_silently(rt: pipeline.Runtime, feed_server: FeedServer) -> None:
    feed_server.route("/big.xml", make_rss(items(5000)))
    report = await poll(rt, feed(feed_server, "/big.xml"), NOW)
    assert (report.status, report.new_items, report.matches) == ("seeded", 5000, 0)
    assert rt.store.counts()["matches"] == 0


# --- when to poll next ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "ttl", "low", "high"),
    [
        ({}, 120, timedelta(minutes=108), timedelta(minutes=132)),
        ({}, 3 * 24 * 60, timedelta(hours=21.6), timedelta(hours=26.4)),
        ({"Cache-Control": "public, max-age=3600"}, None, timedelta(minutes=54), timedelta(minutes=66)),
        ({"Cache-Control": "max-age=60"}, None, MIN, MIN * 1.1),
        ({"Cache-Control": "no-cache"}, None, MIN, MIN * 1.1),
        (
            {
                "Date": format_datetime(NOW, usegmt=True),
                "Expires": format_datetime(NOW + timedelta(hours=2), usegmt=True),
            },
            None,
            timedelta(minutes=108),
            timedelta(minutes=132),
        ),
    ],
    ids=["ttl-2h", "ttl-3d-clamped-to-max", "max-age-1h", "max-age-below-min", "no-cache", "expires-2h"],
)
async def test_server_hints_stretch_the_interval_within_bounds(
    rt: pipeline.Runtime,
    feed_server: FeedServer,
    headers: Mapping[str, str],
    ttl: int | None,
    low: timedelta,
    high: timedelta,
) -> None:
    feed_server.route("/hint.xml", make_rss(items(2), ttl=ttl), headers=headers)
    target = feed(feed_server, "/hint.xml")
    await poll(rt, target, NOW)
    assert low <= state_of(rt, target).next_poll_at - NOW <= high


async def test_a_ttl_is_remembered_for_polls_that_answer_304(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/ttl.xml", make_rss(items(2), ttl=120), etag='"t"')
    target = feed(feed_server, "/ttl.xml")
    await poll(rt, target, NOW)
    assert (await poll(rt, target, NOW + timedelta(hours=2))).status == "not_modified"
    assert state_of(rt, target).next_poll_at - (NOW + timedelta(hours=2)) >= timedelta(minutes=108)


async def test_a_feed_interval_below_the_minimum_is_raised_to_it(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    feed_server.route("/eager.xml", make_rss(items(2)))
    target = feed(feed_server, "/eager.xml", interval=timedelta(minutes=1))
    await poll(rt, target, NOW)
    assert state_of(rt, target).next_poll_at - NOW >= MIN


async def test_a_feed_posting_every_ten_minutes_is_polled_more_often_than_a_weekly_one(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    busy, weekly = feed(feed_server, "/busy.xml", "busy"), feed(feed_server, "/weekly.xml", "weekly")
    for target, step, polls in ((busy, timedelta(minutes=10), 8), (weekly, timedelta(days=7), 4)):
        path = target.url.rsplit("/", 1)[1]
        for k in range(polls + 1):
            feed_server.route(f"/{path}", make_rss(items(k + 3, published=None)))
            await poll(rt, target, NOW + k * step)
    busy_next = state_of(rt, busy).next_poll_at - (NOW + 8 * timedelta(minutes=10))
    weekly_next = state_of(rt, weekly).next_poll_at - (NOW + 4 * timedelta(days=7))
    assert busy_next < weekly_next
    assert MIN <= busy_next <= MIN * 1.1, "as often as the minimum interval allows"
    assert timedelta(hours=21.6) <= weekly_next <= timedelta(hours=24 * 1.1), (
        "as rarely as the maximum allows"
    )


def test_observed_interval_counts_items_not_polls() -> None:
    ten_minutes = [NOW - timedelta(minutes=10 * k) for k in range(1, 13)]
    assert schedule.observed_interval(ten_minutes, NOW) == timedelta(minutes=10)
    assert schedule.observed_interval(ten_minutes[:2], NOW) is None
    batch = [NOW - timedelta(hours=1)] * 6  # six items found in one poll an hour ago
    assert schedule.observed_interval(batch, NOW) == timedelta(minutes=10)


def test_jitter_never_goes_below_the_minimum_but_still_spreads() -> None:
    bounds = schedule.PollBounds(MIN, timedelta(hours=24))
    rng = random.Random(3)
    delays = {schedule.next_poll_time(NOW, MIN, bounds, 0.1, rng) - NOW for _ in range(200)}
    assert min(delays) >= MIN
    assert max(delays) <= MIN * 1.1
    assert len(delays) > 150


# --- one story, many feeds ------------------------------------------------------------------------------


async def test_one_story_in_two_feeds_is_one_digest_entry_with_also_in(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    story = items(1)
    feed_server.route("/eco.xml", make_rss(story, title="BFM Économie"))
    feed_server.route("/intl.xml", make_rss(story, title="BFM International"))
    path = write_config(
        tmp_path,
        textwrap.dedent(
            """
            first_poll = "alert"
            [delivery]
            method = "maildir"
            [[subscriber]]
            email = "reader@example.org"
            schedule = "immediate"
            timezone = "Europe/Paris"
            """
        ),
        feeds=[
            ("BFM Économie", feed_server.url("/eco.xml")),
            ("BFM International", feed_server.url("/intl.xml")),
        ],
    )
    config = load_config(path)
    async with open_runtime(config, load_watchlist(config.watchlist), {}) as runtime:
        assert await run_once(runtime, lambda: NOW) == 0
    messages = sorted((tmp_path / "var/mail/new").iterdir())
    assert len(messages) == 1
    message = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.count("épisode 0") == 1
    assert "BFM International" in text and "BFM Économie" in text


# --- retention ------------------------------------------------------------------------------------------


def seen_long_ago(store: Store, url: str, key: str, *, failing: bool = False) -> None:
    add_feed(store, url, url)
    item = Item(key, url, url, "t", "s", "<p>s</p>", f"{url}/{key}", f"story-{key}")
    record_poll(store, url, None, None, None, [item], [], [], None, NOW - MIN_RETENTION - timedelta(days=2))
    record_poll(store, url, None, None, None, [], [], [], None, NOW)
    if failing:
        record_failure(store, url, "timeout", "timed out", NOW, None)


def test_prune_forgets_only_items_of_healthy_feeds_seen_long_ago(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.sqlite3") as store:
        seen_long_ago(store, "https://ok.test/feed", "old")
        seen_long_ago(store, "https://down.test/feed", "kept", failing=True)
        record_poll(store, "https://ok.test/feed", None, None, None, [], [], [], None, NOW, seen_link_keys=())
        assert store.prune(NOW, MIN_RETENTION) == 1
        assert store.known_keys(["old", "kept"]) == {"kept"}
        with pytest.raises(ValueError, match="at least 90 days"):
            store.prune(NOW, timedelta(days=30))


def test_last_seen_is_refreshed_daily_and_retention_still_counts_from_the_last_sighting(
    tmp_path: Path,
) -> None:
    url, start = "https://ok.test/feed", NOW - timedelta(days=200)
    item = Item("k", url, url, "t", "s", "<p>s</p>", f"{url}/k", "story-k")

    def sighting(at: datetime, seen: list[str]) -> None:
        record_poll(store, url, None, None, None, [], seen, [], None, at)

    with Store.open(tmp_path / "state.sqlite3") as store:
        add_feed(store, url, url)
        record_poll(store, url, None, None, None, [item], [], [], None, start)
        sighting(start + timedelta(hours=23), ["k"])  # within a day: last_seen not rewritten
        sighting(start + timedelta(days=3), ["k"])  # a day old: refreshed
        left = start + timedelta(days=3, hours=20)
        sighting(start + timedelta(days=3, hours=20), ["k"])  # the last sighting, not recorded (< 1 day)
        sighting(left + timedelta(minutes=15), [])  # the item has left the feed
        assert 0 == store.prune(left + MIN_RETENTION - timedelta(minutes=1))
        assert {"k"} == store.known_keys(["k"])
        assert 1 == store.prune(left + MIN_RETENTION + LAST_SEEN_RESOLUTION)
        assert set() == store.known_keys(["k"])
