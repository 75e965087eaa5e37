"""The state database: migrations, one-transaction steps, pending matches and the outbox."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.errors import StateWriteError, StoreError
from alertd.models import Item, Match, Span
from alertd.store import MIGRATIONS, Store
from tests.storage import (
    add_feed,
    mark_retry,
    mark_sent,
    record_failure,
    record_not_modified,
    record_poll,
    register,
)

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def item(key: str, story: str | None = None, feed: str = "https://feeds.test/a.xml") -> Item:
    return Item(
        key=key,
        feed_url=feed,
        feed_name="A",
        title=f"Title {key}",
        summary_text="summary",
        summary_html="<p>summary</p>",
        link=f"https://news.test/{story or key}",
        story_key=story or key,
    )


def poll(store: Store, items: list[Item], topic: str = "t", feed: str = "https://feeds.test/a.xml") -> None:
    add_feed(store, feed, "A")
    matches = [(i.key, Match(topic, ("Alibaba",), (Span("title", 0, 7, "Alibaba"),), 2.0)) for i in items]
    record_poll(store, feed, '"e1"', None, "h", items, [], matches, NOW + timedelta(minutes=15), NOW)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "state.sqlite3") as opened:
        yield opened


def test_new_database_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        assert "ok" == store.integrity_check()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert (len(MIGRATIONS),) == db.execute("PRAGMA user_version").fetchone()
    assert ("wal",) == db.execute("PRAGMA journal_mode").fetchone()


def test_a_database_from_a_newer_alertd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this alertd"):
        Store.open(path)


def test_poll_commits_items_matches_and_http_state_together(store: Store) -> None:
    poll(store, [item("1"), item("2")])
    state = store.feed_state("https://feeds.test/a.xml", "A")
    assert ('"e1"', True, 0) == (state.etag, state.seeded, state.consecutive_failures)
    assert {"1", "2"} == store.known_keys(["1", "2", "3"])
    assert {"items": 2, "matches": 2} == {
        k: v for k, v in store.counts().items() if k in ("items", "matches")
    }


def test_a_failed_step_rolls_back_entirely(store: Store) -> None:
    add_feed(store, "https://feeds.test/a.xml", "A")
    bad = Match("t", ("x",))
    with pytest.raises(sqlite3.IntegrityError):
        # The match references an item that is not in the same poll: the foreign key fails the whole step.
        record_poll(
            store, "https://feeds.test/a.xml", None, None, "h", [item("1")], [], [("missing", bad)], None, NOW
        )
    assert set() == store.known_keys(["1"])


def test_pending_matches_exclude_delivered_ones_and_repeats_of_a_delivered_story(store: Store) -> None:
    register(store, "me@example.org", NOW - timedelta(hours=1))
    poll(store, [item("1", story="s1"), item("2", story="s2")])
    pending = store.pending_matches("me@example.org", ["t"], NOW - timedelta(hours=1))
    assert ["1", "2"] == [m.item.key for m in pending]
    assert (Span("title", 0, 7, "Alibaba"),) == pending[0].match.spans

    outbox_id = store.enqueue_digest("me@example.org", "<d1@alertd>", b"message", pending, NOW)
    assert outbox_id is not None
    assert [] == store.pending_matches("me@example.org", ["t"], NOW - timedelta(hours=1))

    # The same story (s1) later arrives from another feed: already delivered, not pending again.
    poll(
        store,
        [
            item("3", story="s1", feed="https://feeds.test/b.xml"),
            item("4", story="s4", feed="https://feeds.test/b.xml"),
        ],
        feed="https://feeds.test/b.xml",
    )
    assert ["4"] == [
        m.item.key for m in store.pending_matches("me@example.org", ["t"], NOW - timedelta(hours=1))
    ]


def test_a_new_subscriber_gets_no_history(store: Store) -> None:
    poll(store, [item("1")])
    register(store, "late@example.org", NOW + timedelta(minutes=1))
    state = store.subscriber_state("late@example.org")
    assert state is not None
    since = state.since
    assert [] == store.pending_matches("late@example.org", ["t"], since)


def test_the_same_digest_is_never_queued_twice(store: Store) -> None:
    register(store, "me@example.org", NOW - timedelta(hours=1))
    poll(store, [item("1")])
    pending = store.pending_matches("me@example.org", ["t"], NOW - timedelta(hours=1))
    assert store.enqueue_digest("me@example.org", "<d1@alertd>", b"m", pending, NOW) is not None
    assert store.enqueue_digest("me@example.org", "<d1@alertd>", b"m", pending, NOW) is None
    assert 1 == store.counts()["outbox"]


def test_outbox_lifecycle_retry_then_sent(store: Store) -> None:
    register(store, "me@example.org", NOW)
    outbox_id = store.enqueue_digest("me@example.org", "<d1@alertd>", b"m", [], NOW)
    assert outbox_id is not None
    assert [outbox_id] == [m.id for m in store.due_outbox(NOW)]
    mark_retry(store, outbox_id, "451 try later", NOW + timedelta(minutes=1))
    assert [] == store.due_outbox(NOW)
    retried = store.due_outbox(NOW + timedelta(minutes=1))
    assert [(1, "451 try later")] == [(m.attempts, m.last_error) for m in retried]
    mark_sent(store, outbox_id, NOW + timedelta(minutes=1))
    assert [] == store.due_outbox(NOW + timedelta(days=1))
    assert [] == store.outbox()


def test_failures_count_up_and_a_success_resets_them(store: Store) -> None:
    url = "https://feeds.test/a.xml"
    add_feed(store, url, "A")
    record_failure(store, url, "timeout", "read timed out", NOW, NOW + timedelta(minutes=15))
    record_failure(store, url, "http_5xx", "HTTP 503", NOW, NOW + timedelta(minutes=30))
    state = store.feed_state(url, "A")
    assert (2, "http_5xx", False) == (state.consecutive_failures, state.last_error_class, state.gone)
    record_not_modified(store, url, NOW, None)
    assert 0 == store.feed_state(url, "A").consecutive_failures
    record_failure(store, url, "gone", "HTTP 410", NOW, None)
    assert store.feed_state(url, "A").gone


def test_readonly_open_does_not_create_anything(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open(tmp_path / "absent.sqlite3", readonly=True)
    assert not (tmp_path / "absent.sqlite3").exists()


def test_a_poll_that_cannot_be_written_changes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll(store, [item("1")])
    full = tmp_path / "full"
    full.touch()
    monkeypatch.setenv("ALERTD_FAILPOINT", "state_full")
    monkeypatch.setenv("ALERTD_STATE_FULL_FLAG", str(full))
    before = store.counts()
    with pytest.raises(StateWriteError, match="cannot be written"):
        poll(store, [item("2"), item("3")])
    assert before == store.counts()
    assert {"1"} == store.known_keys(["1", "2", "3"])
    full.unlink()
    poll(store, [item("2")])
    assert {"1", "2"} == store.known_keys(["1", "2", "3"])


def test_a_database_of_an_older_alertd_migrates_keeping_its_mail_and_its_rules(tmp_path: Path) -> None:
    """A version-4 database (before claims and the alert flag) with a queued message and two matches."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=ON")
    for migration in MIGRATIONS[:4]:
        db.executescript(migration)
    db.execute("PRAGMA user_version = 4")
    t, later = "2026-11-20T08:00:00.000000+00:00", "2026-11-21T08:00:00.000000+00:00"
    db.execute("INSERT INTO feeds (url, name) VALUES ('https://f.test/a', 'A')")
    for key, matched_at in (("polled", t), ("replayed", later)):
        db.execute(
            "INSERT INTO items (key, feed_url, story_key, title, summary_text, summary_html, first_seen, last_seen)"
            " VALUES (?, 'https://f.test/a', ?, 'Alibaba', '', '', ?, ?)",
            (key, key, t, t),
        )
        db.execute(
            "INSERT INTO matches (item_key, topic_id, terms, spans, score, matched_at) VALUES (?, 't', '[]', '[]', 1, ?)",
            (key, matched_at),
        )
    db.execute(
        "INSERT INTO outbox (message_id, subscriber, created_at, next_attempt_at, message, attempts, last_error)"
        " VALUES ('<m@alertd>', 'a@example.org', ?, ?, x'00', 1, '451 later')",
        (t, later),
    )
    db.execute(
        "INSERT INTO deliveries (subscriber, item_key, topic_id, story_key, outbox_id) VALUES ('a@example.org', 'polled', 't', 'polled', 1)"
    )
    db.commit()
    db.close()

    with Store.open(path) as store:
        assert "ok" == store.integrity_check()
        (message,) = store.outbox(("pending", "sending", "sent", "failed"))
        assert ("pending", 1, "451 later", None) == (
            message.status,
            message.attempts,
            message.last_error,
            message.claimed_by,
        )
        rows = store._db.execute("SELECT item_key, alert FROM matches ORDER BY item_key").fetchall()
        assert [("polled", 1), ("replayed", 0)] == [tuple(row) for row in rows]
        assert [] == store._db.execute("PRAGMA foreign_key_check").fetchall()
        assert datetime.fromisoformat(t) == store.feed_state("https://f.test/a", "A").last_new_at


def test_a_digest_built_beside_another_process_that_queued_the_same_matches_is_not_queued(
    tmp_path: Path,
) -> None:
    """`alertd flush` and the daemon read the same pending matches; whichever queues second queues nothing."""
    path = tmp_path / "state.sqlite3"
    with Store.open(path) as daemon, Store.open(path) as flush:
        register(daemon, "r@example.org", NOW)
        add_feed(daemon, "https://feeds.test/a.xml", "A")
        story = item("a1")
        record_poll(
            daemon, story.feed_url, None, None, "h", [story], [], [("a1", Match("t", ("x",)))], None, NOW
        )
        read_by_daemon = daemon.pending_matches("r@example.org", ["t"], NOW - timedelta(days=1))
        read_by_flush = flush.pending_matches("r@example.org", ["t"], NOW - timedelta(days=1))
        assert ["a1"] == [m.item.key for m in read_by_daemon] == [m.item.key for m in read_by_flush]
        first = flush.enqueue_digest("r@example.org", "<by-flush@alertd>", b"m", read_by_flush, NOW)
        second = daemon.enqueue_digest("r@example.org", "<by-daemon@alertd>", b"m", read_by_daemon, NOW)
        assert first is not None
        assert second is None
        assert ["<by-flush@alertd>"] == [m.message_id for m in daemon.outbox(("pending",))]
