"""Retention: a year of a 100-feed farm keeps the database bounded, and nothing that matters is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.models import Item, Match
from alertd.store import Store
from tests.storage import add_feed, mark_sent, record_failure, record_poll, register

START = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
FEEDS = [f"https://feeds.test/{n}.xml" for n in range(100)]
SIZE_LIMIT = 96 * 1024 * 1024  # what a year of this farm may weigh: 13 weeks of 5,000 items, stated


def week_of_items(feed: str, week: int, count: int = 50) -> list[Item]:
    return [
        Item(
            key=f"{feed}#{week}-{n}",
            feed_url=feed,
            feed_name=feed,
            title=f"Story {week}-{n} from {feed}",
            summary_text="Un résumé de taille réaliste pour une dépêche économique. " * 4,
            summary_html="<p>" + "Un résumé de taille réaliste pour une dépêche économique. " * 4 + "</p>",
            link=f"https://news.test/{feed[-6:]}/{week}/{n}",
            story_key=f"news.test/{feed[-6:]}/{week}/{n}",
        )
        for n in range(count)
    ]


def database_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@pytest.mark.slow
def test_a_simulated_year_of_a_100_feed_farm_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    sizes: dict[int, int] = {}
    with Store.open(path) as store:
        register(store, "me@example.org", START)
        for feed in FEEDS:
            add_feed(store, feed, feed)
        for week in range(0, 52, 2):  # a poll every other week brings two weeks of items
            now = START + timedelta(weeks=week)
            for feed in FEEDS:
                items = week_of_items(feed, week, count=100)
                matches = [(items[0].key, Match("t", ("x",)))]
                record_poll(store, feed, None, None, f"h{week}", items, [], matches, None, now)
            pending = store.pending_matches("me@example.org", ["t"], START)
            outbox_id = store.enqueue_digest(
                "me@example.org", f"<w{week}@alertd>", b"x" * 30_000, pending, now
            )
            assert outbox_id is not None
            mark_sent(store, outbox_id, now)
            store.prune(now)
            store.prune_history(now)
            store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[week] = database_size(path)
        counts = store.counts()
        assert "ok" == store.integrity_check()
    # 100 feeds x 50 items a week, each leaving its feed at once: about 13 weeks of items remain, not 52.
    assert counts["items"] <= 100 * 50 * 14
    assert counts["outbox"] <= 14
    assert sizes[50] <= SIZE_LIMIT, sizes[50]
    assert sizes[50] <= sizes[20] * 1.1, (sizes[20], sizes[50])


def test_nothing_is_pruned_for_a_feed_whose_last_poll_failed(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        feed = FEEDS[0]
        add_feed(store, feed, "F")
        record_poll(store, feed, None, None, "h", week_of_items(feed, 0), [], [], None, START)
        record_failure(store, feed, "timeout", "read timed out", START + timedelta(days=200), None)
        assert 0 == store.prune(START + timedelta(days=200))
        assert 50 == store.counts()["items"]


def test_an_item_still_in_its_feed_is_never_mailed_again_after_retention(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        register(store, "me@example.org", START)
        feed = FEEDS[0]
        add_feed(store, feed, "F")
        item = week_of_items(feed, 0)[0]
        record_poll(store, feed, None, None, "h", [item], [], [(item.key, Match("t", ("x",)))], None, START)
        pending = store.pending_matches("me@example.org", ["t"], START)
        outbox_id = store.enqueue_digest("me@example.org", "<a@alertd>", b"m", pending, START)
        assert outbox_id is not None
        mark_sent(store, outbox_id, START)
        for day in range(1, 200, 7):
            now = START + timedelta(days=day)
            record_poll(store, feed, None, None, f"h{day}", [], [item.key], [], None, now)
            store.prune(now)
            store.prune_history(now)
        assert 0 == store.counts()["outbox"]
        assert [] == store.pending_matches("me@example.org", ["t"], START)


def test_retention_below_90_days_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store, pytest.raises(ValueError, match="at least 90 days"):
        store.prune_history(START, timedelta(days=30))


def test_answered_poll_requests_are_forgotten_after_retention_and_open_ones_kept(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        old, recent, open_one = store.request_polls(["https://a.test/rss"] * 3, START)
        store.answer_poll_request(old, "A: ok, 0 new items, 0 matches", False, START)
        store.answer_poll_request(recent, "A: ok, 0 new items, 0 matches", False, START + timedelta(days=100))

        pruned = store.prune_history(START + timedelta(days=120))

        assert pruned["poll_requests"] == 1
        assert set(store.poll_outcomes([old, recent, open_one])) == {recent}
        assert store.open_poll_requests() == [(open_one, "https://a.test/rss")]
