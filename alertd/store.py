"""All SQL: alertd's state in one SQLite file (WAL, ``synchronous=FULL``).

Each pipeline step is one transaction, and a state change is written only after its side effect succeeded:
a poll commits the feed's HTTP state, its new items and their matches together; a digest commits its outbox
row and the "delivered" marks of its matches together; an outbox row becomes ``sent`` only after the mail
server (or the Maildir) accepted the message. A crash at any instant therefore loses nothing and repeats at
most one message, with the same Message-ID.

Migrations are numbered, append-only and applied in one transaction each; ``PRAGMA user_version`` records
how far a database is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from alertd.errors import StoreError
from alertd.failpoint import failpoint
from alertd.identify import item_link_key
from alertd.models import Item, Match, MatchedItem, Span

UTC = timezone.utc  # datetime.UTC is Python 3.11+

MIGRATIONS: tuple[str, ...] = (
    # 1: feeds and their HTTP state, seen items, matches, subscribers, the outbox and what each mail carried.
    """
    CREATE TABLE feeds (
        url TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        body_hash TEXT,
        first_success_at TEXT,
        last_success_at TEXT,
        last_error_at TEXT,
        last_error_class TEXT,
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        next_poll_at TEXT,
        gone INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE items (
        key TEXT PRIMARY KEY,
        feed_url TEXT NOT NULL,
        story_key TEXT NOT NULL,
        title TEXT NOT NULL,
        summary_text TEXT NOT NULL,
        summary_html TEXT NOT NULL,
        link TEXT,
        published TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE INDEX items_by_story ON items (story_key);
    CREATE INDEX items_by_feed ON items (feed_url, last_seen);
    CREATE TABLE matches (
        item_key TEXT NOT NULL REFERENCES items (key) ON DELETE CASCADE,
        topic_id TEXT NOT NULL,
        terms TEXT NOT NULL,
        spans TEXT NOT NULL,
        score REAL NOT NULL,
        matched_at TEXT NOT NULL,
        PRIMARY KEY (item_key, topic_id)
    );
    CREATE INDEX matches_by_time ON matches (matched_at);
    CREATE TABLE subscribers (
        email TEXT PRIMARY KEY,
        since TEXT NOT NULL,
        last_digest_at TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        subscriber TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT,
        message BLOB NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE TABLE deliveries (
        subscriber TEXT NOT NULL,
        item_key TEXT NOT NULL,
        topic_id TEXT NOT NULL,
        story_key TEXT NOT NULL,
        outbox_id INTEGER REFERENCES outbox (id),
        PRIMARY KEY (subscriber, item_key, topic_id)
    );
    CREATE INDEX deliveries_by_story ON deliveries (subscriber, topic_id, story_key);
    """,
    # 2: the daemon's own state, so `alertd status` can report it whether or not the daemon runs.
    """
    CREATE TABLE daemon (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER,
        started_at TEXT,
        heartbeat_at TEXT,
        stopped_at TEXT,
        config_path TEXT,
        reload_at TEXT,
        reload_ok INTEGER NOT NULL DEFAULT 1,
        reload_error TEXT
    );
    INSERT INTO daemon (id) VALUES (1);
    """,
    # 3: polling at scale. Where a feed is fetched from after a confirmed permanent redirect (the config URL
    # stays its identity), the redirect being confirmed, the feed's <ttl>; each item's link key, so a feed
    # that rotates its GUIDs alerts nothing again; first-seen times by feed, for the posting rate; feed events
    # (flood guard, moves) for the digest's feed-health section.
    """
    ALTER TABLE feeds ADD COLUMN effective_url TEXT;
    ALTER TABLE feeds ADD COLUMN redirect_candidate TEXT;
    ALTER TABLE feeds ADD COLUMN redirect_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE feeds ADD COLUMN moved_at TEXT;
    ALTER TABLE feeds ADD COLUMN ttl_minutes INTEGER;
    ALTER TABLE items ADD COLUMN link_key TEXT;
    UPDATE items SET link_key = story_key WHERE link IS NOT NULL AND story_key NOT LIKE 'title:%';
    CREATE INDEX items_by_link ON items (feed_url, link_key);
    CREATE INDEX items_by_arrival ON items (feed_url, first_seen);
    CREATE TABLE feed_events (
        id INTEGER PRIMARY KEY,
        feed_url TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX feed_events_by_time ON feed_events (at);
    """,
    # 4: digests and alerts. A delivery record says whether the match went out in a scheduled digest or in a
    # priority alert (a story alerted is digested later, marked "already sent"), so the kind joins the key;
    # a paused SMTP delivery (the server refused our credentials) survives restarts until someone acts.
    """
    CREATE TABLE deliveries_v4 (
        subscriber TEXT NOT NULL,
        item_key TEXT NOT NULL,
        topic_id TEXT NOT NULL,
        story_key TEXT NOT NULL,
        outbox_id INTEGER REFERENCES outbox (id),
        kind TEXT NOT NULL DEFAULT 'digest' CHECK (kind IN ('digest', 'alert')),
        PRIMARY KEY (subscriber, item_key, topic_id, kind)
    );
    INSERT INTO deliveries_v4 (subscriber, item_key, topic_id, story_key, outbox_id, kind)
        SELECT subscriber, item_key, topic_id, story_key, outbox_id, 'digest' FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v4 RENAME TO deliveries;
    CREATE INDEX deliveries_by_story ON deliveries (subscriber, topic_id, story_key);
    CREATE INDEX deliveries_by_outbox ON deliveries (outbox_id);
    ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'digest';
    ALTER TABLE daemon ADD COLUMN delivery_paused_at TEXT;
    ALTER TABLE daemon ADD COLUMN delivery_paused_reason TEXT;
    ALTER TABLE daemon ADD COLUMN delivery_paused_config TEXT;
    """,
)

_MATCHED_COLUMNS = (
    "i.key, i.feed_url, i.story_key, i.title, i.summary_text, i.summary_html, i.link,"
    " i.published, i.first_seen, m.topic_id, m.terms, m.spans, m.score, f.name"
)
"""The columns ``_matched_from_row`` reads, in its order."""
_MATCHED_FROM = "FROM matches m JOIN items i ON i.key = m.item_key LEFT JOIN feeds f ON f.url = i.feed_url"

MIN_RETENTION = timedelta(days=90)
"""Seen items are kept at least this long after they were last seen in their feed (RELIABILITY I5)."""
LAST_SEEN_RESOLUTION = timedelta(days=1)
"""An item's ``last_seen`` is refreshed when a poll sees it and it is older than this (see record_poll)."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers about a feed between polls."""

    url: str
    name: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    first_success_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error_class: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_poll_at: datetime | None = None
    gone: bool = False
    effective_url: str | None = None
    """Where the feed is fetched from since a confirmed permanent redirect; None: its config URL."""
    redirect_candidate: str | None = None
    redirect_count: int = 0
    """Consecutive polls that saw the same permanent redirect to ``redirect_candidate`` and parsed."""
    moved_at: datetime | None = None
    ttl_minutes: int | None = None

    @property
    def seeded(self) -> bool:
        """True once the feed has been polled successfully at least once."""
        return self.first_success_at is not None


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """Something about a feed worth telling its readers once: a flood held back, a move."""

    feed_url: str
    feed_name: str
    at: datetime
    kind: str  # flood | moved
    message: str


@dataclass(frozen=True, slots=True)
class DaemonState:
    """What the running (or last) daemon wrote about itself."""

    pid: int | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stopped_at: datetime | None = None
    config_path: str | None = None
    reload_at: datetime | None = None
    reload_ok: bool = True
    reload_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPause:
    """SMTP delivery stopped on a configuration error; messages wait, pending, until it is lifted."""

    since: datetime
    reason: str
    config_fingerprint: str
    """The delivery settings in force when it paused: different settings lift the pause."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A rendered message waiting in (or done with) the outbox."""

    id: int
    message_id: str
    subscriber: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    message: bytes


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one successful poll writes: new items, their matches, and the feed's new HTTP state."""

    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    new_items: Sequence[Item]
    seen_keys: Sequence[str]
    matches: Sequence[tuple[str, Match]]  # (item key, match)
    next_poll_at: datetime | None
    seen_link_keys: Sequence[str] = ()
    """Link keys of items known by their link only (their GUID changed): their last_seen is refreshed too."""
    ttl_minutes: int | None = None
    redirect_candidate: str | None = None
    redirect_count: int = 0
    moved_to: str | None = None
    """Set when this poll confirmed a permanent redirect: fetch from here from now on."""
    events: Sequence[tuple[str, str]] = ()
    """Feed events to record with the poll: (kind, message)."""


class Store:
    """The state database. Open with ``Store.open(path)``; use as a context manager or call ``close()``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Store:
        """Open (creating and migrating unless ``readonly``) the database at ``path``."""
        try:
            if readonly:
                connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(path, isolation_level=None, timeout=30)
                # Takes effect only on a new, empty file (before WAL writes its header): lets prune_history
                # give free pages back to the disk. A no-op on an existing database.
                connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the state database: {exc}") from exc
        connection.row_factory = sqlite3.Row
        store = cls(connection, path)
        if not readonly:
            store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, redoable: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic step: everything inside commits together or not at all.

        ``redoable``: a poll's bookkeeping, which the next poll would simply redo. It commits without waiting
        for fsync (``synchronous=NORMAL``): a crash of the process loses nothing (WAL), a power cut may lose
        the last such commits. That is safe because the WAL is ordered: any later ``FULL`` commit (an outbox
        row, a mail marked sent) makes every earlier commit durable with it, so a lost poll was never
        followed by anything that depended on it, and re-polling finds the same items new again. At 1,000
        feeds an fsync per poll costs seconds of a blocked event loop per cycle (bench/README.md).
        """
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if redoable else 'FULL'}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this alertd "
                f"({len(MIGRATIONS)}); upgrade alertd"
            )
        for number in range(version, len(MIGRATIONS)):
            with self.transaction() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                failpoint("mid_migration")
                db.execute(f"PRAGMA user_version = {number + 1}")

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # --- feeds ---------------------------------------------------------------------------------------------

    def feed_state(self, url: str, name: str) -> FeedState:
        """The stored state of a feed; a feed never polled gets a blank state (and a row)."""
        row = self._db.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        if row is None:
            with self.transaction(redoable=True) as db:
                db.execute("INSERT OR IGNORE INTO feeds (url, name) VALUES (?, ?)", (url, name))
            return FeedState(url=url, name=name)
        return self._feed_from_row(row)

    def feeds(self) -> list[FeedState]:
        rows = self._db.execute("SELECT * FROM feeds ORDER BY consecutive_failures DESC, name").fetchall()
        return [self._feed_from_row(row) for row in rows]

    @staticmethod
    def _feed_from_row(values: sqlite3.Row) -> FeedState:
        return FeedState(
            url=str(values["url"]),
            name=str(values["name"]),
            etag=_opt_str(values["etag"]),
            last_modified=_opt_str(values["last_modified"]),
            body_hash=_opt_str(values["body_hash"]),
            first_success_at=_time(_opt_str(values["first_success_at"])),
            last_success_at=_time(_opt_str(values["last_success_at"])),
            last_error_at=_time(_opt_str(values["last_error_at"])),
            last_error_class=_opt_str(values["last_error_class"]),
            last_error=_opt_str(values["last_error"]),
            consecutive_failures=int(str(values["consecutive_failures"])),
            next_poll_at=_time(_opt_str(values["next_poll_at"])),
            gone=bool(values["gone"]),
            # Columns of migration 3 may be missing from a database opened read-only and not yet migrated.
            effective_url=_opt_str(_column(values, "effective_url")),
            redirect_candidate=_opt_str(_column(values, "redirect_candidate")),
            redirect_count=int(str(_column(values, "redirect_count") or 0)),
            moved_at=_time(_opt_str(_column(values, "moved_at"))),
            ttl_minutes=_opt_int(_column(values, "ttl_minutes")),
        )

    def record_poll(self, outcome: PollOutcome, now: datetime) -> int:
        """Commit a successful poll in one transaction; return how many items were new."""
        stamp = _iso(now)
        with self.transaction(redoable=True) as db:
            db.execute(
                "UPDATE feeds SET etag = ?, last_modified = ?, body_hash = COALESCE(?, body_hash),"
                " first_success_at = COALESCE(first_success_at, ?), last_success_at = ?,"
                " consecutive_failures = 0, next_poll_at = ?, gone = 0 WHERE url = ?",
                (
                    outcome.etag,
                    outcome.last_modified,
                    outcome.body_hash,
                    stamp,
                    stamp,
                    _iso(outcome.next_poll_at) if outcome.next_poll_at else None,
                    outcome.url,
                ),
            )
            db.execute(
                "UPDATE feeds SET ttl_minutes = ?, redirect_candidate = ?, redirect_count = ?,"
                " effective_url = COALESCE(?, effective_url), moved_at = COALESCE(?, moved_at) WHERE url = ?",
                (
                    outcome.ttl_minutes,
                    outcome.redirect_candidate,
                    outcome.redirect_count,
                    outcome.moved_to,
                    stamp if outcome.moved_to else None,
                    outcome.url,
                ),
            )
            cursor = db.executemany(
                "INSERT OR IGNORE INTO items (key, feed_url, story_key, title, summary_text, summary_html,"
                " link, published, first_seen, last_seen, link_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        item.key,
                        item.feed_url,
                        item.story_key,
                        item.title,
                        item.summary_text,
                        item.summary_html,
                        item.link,
                        _iso(item.published) if item.published else None,
                        stamp,
                        stamp,
                        item_link_key(item),
                    )
                    for item in outcome.new_items
                ],
            )
            inserted = max(cursor.rowcount, 0)
            # last_seen only feeds retention (counted in days, >= 90): rewriting it, and its index, at every
            # poll of every item would be most of a steady poll's writes. It is refreshed once it is a day old.
            stale = _iso(now - LAST_SEEN_RESOLUTION)
            db.executemany(
                "UPDATE items SET last_seen = ? WHERE key = ? AND last_seen < ?",
                [(stamp, key, stale) for key in outcome.seen_keys],
            )
            db.executemany(
                "UPDATE items SET last_seen = ? WHERE feed_url = ? AND link_key = ? AND last_seen < ?",
                [(stamp, outcome.url, link, stale) for link in outcome.seen_link_keys],
            )
            db.executemany(
                "INSERT INTO feed_events (feed_url, at, kind, message) VALUES (?, ?, ?, ?)",
                [(outcome.url, stamp, kind, message) for kind, message in outcome.events],
            )
            db.executemany(
                "INSERT OR IGNORE INTO matches (item_key, topic_id, terms, spans, score, matched_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(key, m.topic_id, *_encode_match(m), stamp) for key, m in outcome.matches],
            )
        return inserted

    def record_not_modified(self, url: str, now: datetime, next_poll_at: datetime | None) -> None:
        with self.transaction(redoable=True) as db:
            db.execute(
                "UPDATE feeds SET last_success_at = ?, consecutive_failures = 0, next_poll_at = ?"
                " WHERE url = ?",
                (_iso(now), _iso(next_poll_at) if next_poll_at else None, url),
            )

    def record_failure(
        self, url: str, error_class: str, message: str, now: datetime, next_poll_at: datetime | None
    ) -> None:
        with self.transaction(redoable=True) as db:
            db.execute(
                "UPDATE feeds SET last_error_at = ?, last_error_class = ?, last_error = ?,"
                " consecutive_failures = consecutive_failures + 1, next_poll_at = ?,"
                " redirect_candidate = NULL, redirect_count = 0,"
                " gone = CASE WHEN ? = 'gone' THEN 1 ELSE gone END WHERE url = ?",
                (
                    _iso(now),
                    error_class,
                    message[:500],
                    _iso(next_poll_at) if next_poll_at else None,
                    error_class,
                    url,
                ),
            )

    def known_link_keys(self, feed_url: str, link_keys: Iterable[str]) -> set[str]:
        """Which of ``link_keys`` an item of this feed already had (the secondary identity, RELIABILITY I2)."""
        wanted = list(link_keys)
        known: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT link_key FROM items WHERE feed_url = ? AND link_key IN ({marks})",  # noqa: S608
                (feed_url, *chunk),
            )
            known.update(row[0] for row in rows)
        return known

    def recent_arrivals(self, feed_url: str, after: datetime, limit: int) -> list[datetime]:
        """First-seen times of the feed's newest ``limit`` items first seen after ``after`` (its seeding)."""
        rows = self._db.execute(
            "SELECT first_seen FROM items WHERE feed_url = ? AND first_seen > ? ORDER BY first_seen DESC LIMIT ?",
            (feed_url, _iso(after), limit),
        )
        return [datetime.fromisoformat(row[0]) for row in rows]

    def feed_events(
        self, since: datetime, kind: str | None = None, feed_url: str | None = None
    ) -> list[FeedEvent]:
        """Feed events (flood guard, moves) recorded at or after ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT e.feed_url, COALESCE(f.name, e.feed_url), e.at, e.kind, e.message FROM feed_events e"
            " LEFT JOIN feeds f ON f.url = e.feed_url WHERE e.at >= ? AND (? IS NULL OR e.kind = ?)"
            " AND (? IS NULL OR e.feed_url = ?) ORDER BY e.at, e.id",
            (_iso(since), kind, kind, feed_url, feed_url),
        )
        return [
            FeedEvent(str(r[0]), str(r[1]), datetime.fromisoformat(r[2]), str(r[3]), str(r[4])) for r in rows
        ]

    def prune(self, now: datetime, retention: timedelta = MIN_RETENTION) -> int:
        """Forget items last seen in their feed more than ``retention`` ago; return how many.

        Only items of feeds whose last poll succeeded (a failed or gone feed keeps everything: its items were
        not seen because of the failure, not because they left the feed), and never an item that a pending
        outbox message carries. Their matches go with them; delivery records stay, so a story once mailed is
        never mailed again. ``retention`` below ``MIN_RETENTION`` is refused.
        """
        if retention < MIN_RETENTION:
            raise ValueError(f"retention must be at least {MIN_RETENTION.days} days, got {retention}")
        with self.transaction() as db:
            cursor = db.execute(
                "DELETE FROM items WHERE last_seen < ? AND feed_url IN (SELECT url FROM feeds"
                "   WHERE consecutive_failures = 0 AND gone = 0 AND last_success_at IS NOT NULL)"
                " AND key NOT IN (SELECT d.item_key FROM deliveries d JOIN outbox o ON o.id = d.outbox_id"
                "   WHERE o.status = 'pending')",
                # last_seen may lag by LAST_SEEN_RESOLUTION: counted in, so the retention is never cut short.
                (_iso(now - retention - LAST_SEEN_RESOLUTION),),
            )
        return cursor.rowcount

    def prune_history(self, now: datetime, retention: timedelta = MIN_RETENTION) -> dict[str, int]:
        """Forget mail sent and feed events logged more than ``retention`` ago, and deliveries of pruned items.

        Messages still pending or failed stay (they are someone's to deal with). Then return free pages to
        the file system, a little at a time, so the database stays bounded in size as well as in rows.
        """
        if retention < MIN_RETENTION:
            raise ValueError(f"retention must be at least {MIN_RETENTION.days} days, got {retention}")
        cutoff = _iso(now - retention)
        with self.transaction() as db:
            # A delivery record outlives its mail (it is what stops a story still in its feed from being
            # mailed again), but not its item: once prune() forgot the item, the record has nothing to guard.
            deliveries = db.execute(
                "DELETE FROM deliveries WHERE item_key NOT IN (SELECT key FROM items)"
            ).rowcount
            old_mail = "SELECT id FROM outbox WHERE status = 'sent' AND sent_at < ?"
            db.execute(f"UPDATE deliveries SET outbox_id = NULL WHERE outbox_id IN ({old_mail})", (cutoff,))  # noqa: S608
            outbox = db.execute(
                "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?", (cutoff,)
            ).rowcount
            events = db.execute("DELETE FROM feed_events WHERE at < ?", (cutoff,)).rowcount
        self._db.execute("PRAGMA incremental_vacuum")
        return {"deliveries": deliveries, "outbox": outbox, "feed_events": events}

    def known_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` the store has seen already."""
        wanted = list(keys)
        known: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM items WHERE key IN ({marks})", chunk)  # noqa: S608
            known.update(row[0] for row in rows)
        return known

    # --- subscribers and digests ---------------------------------------------------------------------------

    def subscriber_state(self, email: str, now: datetime) -> tuple[datetime, datetime]:
        """(since, last_digest_at) for a subscriber; a new subscriber starts now and gets no history."""
        row = self._db.execute(
            "SELECT since, last_digest_at FROM subscribers WHERE email = ?", (email,)
        ).fetchone()
        if row is None:
            with self.transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO subscribers (email, since, last_digest_at) VALUES (?, ?, ?)",
                    (email, _iso(now), _iso(now)),
                )
            return now, now
        return datetime.fromisoformat(row[0]), datetime.fromisoformat(row[1])

    def pending_matches(self, email: str, topics: Sequence[str], since: datetime) -> list[MatchedItem]:
        """Matches of ``topics`` not yet delivered to ``email``, oldest first, matched after ``since``.

        A match whose story (same story key) already reached this subscriber for this topic is not pending:
        the same story seen in another feed later never mails twice.
        """
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self._db.execute(
            f"SELECT {_MATCHED_COLUMNS} {_MATCHED_FROM}"  # noqa: S608 - constants and "?" marks only
            f" WHERE m.topic_id IN ({marks}) AND m.matched_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber = ? AND d.topic_id = m.topic_id"
            "   AND d.kind = 'digest' AND (d.item_key = m.item_key OR d.story_key = i.story_key))"
            " ORDER BY i.first_seen, i.key",
            (*topics, _iso(since), email),
        ).fetchall()
        return [_matched_from_row(row) for row in rows]

    def pending_alerts(
        self, email: str, topics: Sequence[str], since: datetime
    ) -> list[tuple[MatchedItem, datetime]]:
        """Matches of (priority) ``topics`` that reached ``email`` neither in an alert nor in a digest, with
        the time each was matched, oldest first.

        Only matches made by the poll that first saw their item (``record_poll`` stamps both with the same
        time): an alert is news; matches added later (``replay --deliver``) go to digests only.
        """
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self._db.execute(
            f"SELECT {_MATCHED_COLUMNS}, m.matched_at {_MATCHED_FROM}"  # noqa: S608 - constants and "?" marks only
            f" WHERE m.topic_id IN ({marks}) AND m.matched_at >= ? AND m.matched_at = i.first_seen"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber = ? AND d.topic_id = m.topic_id"
            "   AND (d.item_key = m.item_key OR d.story_key = i.story_key))"
            " ORDER BY m.matched_at, i.key",
            (*topics, _iso(since), email),
        ).fetchall()
        return [(_matched_from_row(row[:14]), datetime.fromisoformat(str(row[14]))) for row in rows]

    def alerted(self, email: str, matched: Sequence[MatchedItem]) -> set[tuple[str, str]]:
        """(item key, topic) of those ``matched`` whose story already went to ``email`` in an alert."""
        found: set[tuple[str, str]] = set()
        for mi in matched:
            row = self._db.execute(
                "SELECT 1 FROM deliveries WHERE subscriber = ? AND topic_id = ? AND kind = 'alert'"
                " AND (item_key = ? OR story_key = ?) LIMIT 1",
                (email, mi.match.topic_id, mi.item.key, mi.item.story_key),
            ).fetchone()
            if row is not None:
                found.add((mi.item.key, mi.match.topic_id))
        return found

    def matches_since(self, topics: Sequence[str], since: datetime) -> list[MatchedItem]:
        """Every stored match of ``topics`` made at or after ``since``, delivered or not (``alertd preview
        --since``), oldest first."""
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self._db.execute(
            f"SELECT {_MATCHED_COLUMNS} {_MATCHED_FROM}"
            f" WHERE m.topic_id IN ({marks}) AND m.matched_at >= ? ORDER BY i.first_seen, i.key",
            (*topics, _iso(since)),
        ).fetchall()
        return [_matched_from_row(row) for row in rows]

    def subscriber_since(self, email: str) -> tuple[datetime, datetime] | None:
        """(since, last_digest_at) of a known subscriber, None for an unknown one; never writes."""
        row = self._db.execute(
            "SELECT since, last_digest_at FROM subscribers WHERE email = ?", (email,)
        ).fetchone()
        return None if row is None else (datetime.fromisoformat(row[0]), datetime.fromisoformat(row[1]))

    def add_matches(self, matches: Sequence[tuple[str, Match]], now: datetime) -> int:
        """Record matches found outside a poll (``replay --deliver``); existing (item, topic) pairs are kept."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO matches (item_key, topic_id, terms, spans, score, matched_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(key, m.topic_id, *_encode_match(m), _iso(now)) for key, m in matches],
            )
            return db.total_changes - before

    def enqueue_digest(
        self,
        email: str,
        message_id: str,
        message: bytes,
        included: Sequence[MatchedItem],
        now: datetime,
        *,
        kind: str = "digest",
    ) -> int | None:
        """Store a rendered digest (or ``kind="alert"``) and mark its matches delivered, in one transaction.

        Returns the outbox id, or None when a message with this Message-ID is already queued (a retried
        build after a crash produces the same id and must not queue twice). Only a digest moves the
        subscriber's schedule on (``last_digest_at``); an alert leaves it alone.
        """
        if kind not in ("digest", "alert"):
            raise ValueError(f"unknown message kind {kind!r}")
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, subscriber, created_at, next_attempt_at, message, kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, email, _iso(now), _iso(now), message, kind),
            )
            outbox_id = cursor.lastrowid if cursor.rowcount else None
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (subscriber, item_key, topic_id, story_key, outbox_id, kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(email, m.item.key, m.match.topic_id, m.item.story_key, outbox_id, kind) for m in included],
            )
            if kind == "digest":
                db.execute("UPDATE subscribers SET last_digest_at = ? WHERE email = ?", (_iso(now), email))
        return outbox_id

    def last_digest_at(self, email: str) -> datetime | None:
        """When the subscriber's schedule was last served (None for a subscriber never seen)."""
        row = self._db.execute("SELECT last_digest_at FROM subscribers WHERE email = ?", (email,)).fetchone()
        return _time(row[0]) if row else None

    def mark_digest_time(self, email: str, now: datetime) -> None:
        """A digest was due but had nothing to say: remember that it was considered."""
        with self.transaction() as db:
            db.execute("UPDATE subscribers SET last_digest_at = ? WHERE email = ?", (_iso(now), email))

    # --- outbox --------------------------------------------------------------------------------------------

    def due_outbox(self, now: datetime) -> list[OutboxMessage]:
        rows = self._db.execute(
            "SELECT id, message_id, subscriber, status, attempts, created_at, next_attempt_at, last_error,"
            " message FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id",
            (_iso(now),),
        ).fetchall()
        return [_outbox_from_row(row) for row in rows]

    def outbox(self, statuses: Sequence[str] = ("pending", "failed")) -> list[OutboxMessage]:
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            "SELECT id, message_id, subscriber, status, attempts, created_at, next_attempt_at, last_error,"  # noqa: S608 - only "?" marks are interpolated
            f" message FROM outbox WHERE status IN ({marks}) ORDER BY id",
            tuple(statuses),
        ).fetchall()
        return [_outbox_from_row(row) for row in rows]

    def mark_sent(self, outbox_id: int, now: datetime, note: str | None = None) -> None:
        """Accepted by the server or written to the mailbox; ``note`` keeps what went wrong on the way
        (recipients the server refused while accepting others)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (_iso(now), note[:500] if note else None, outbox_id),
            )

    def last_sent_at(self) -> datetime | None:
        row = self._db.execute("SELECT MAX(sent_at) FROM outbox WHERE status = 'sent'").fetchone()
        return _time(row[0]) if row else None

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (error[:500], _iso(next_attempt_at), outbox_id),
            )

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error[:500], outbox_id),
            )

    def requeue(self, outbox_id: int, now: datetime) -> bool:
        """Put a failed message back in the queue (``alertd outbox retry``), due now.

        Its retry lifetime starts again (``created_at`` becomes now), or the first 4xx would fail it for good.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, created_at = ?, attempts = 0"
                " WHERE id = ? AND status != 'sent'",
                (_iso(now), _iso(now), outbox_id),
            )
        return cursor.rowcount == 1

    def mark_attempted(self, outbox_id: int, error: str) -> None:
        """An attempt that says nothing about the message (the delivery setup is wrong): note it, keep it due."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error[:500], outbox_id),
            )

    # --- delivery pause ---------------------------------------------------------------------------------------

    def pause_delivery(self, reason: str, config_fingerprint: str, now: datetime) -> None:
        """Stop SMTP delivery until :meth:`resume_delivery` (the server refused our credentials, 535)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE daemon SET delivery_paused_at = ?, delivery_paused_reason = ?, delivery_paused_config = ?"
                " WHERE id = 1",
                (_iso(now), reason[:500], config_fingerprint),
            )

    def delivery_pause(self) -> DeliveryPause | None:
        """The current delivery pause, or None (also on a database not yet migrated, opened read-only)."""
        try:
            row = self._db.execute(
                "SELECT delivery_paused_at, delivery_paused_reason, delivery_paused_config FROM daemon WHERE id = 1"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        if row is None or row[0] is None:
            return None
        return DeliveryPause(datetime.fromisoformat(row[0]), str(row[1] or ""), str(row[2] or ""))

    def resume_delivery(self) -> bool:
        """Lift a delivery pause; True if there was one."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE daemon SET delivery_paused_at = NULL, delivery_paused_reason = NULL,"
                " delivery_paused_config = NULL WHERE id = 1 AND delivery_paused_at IS NOT NULL"
            )
        return cursor.rowcount == 1

    # --- the daemon itself ----------------------------------------------------------------------------------

    def daemon_started(self, pid: int, config_path: Path, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE daemon SET pid = ?, started_at = ?, heartbeat_at = ?, stopped_at = NULL, config_path = ?,"
                " reload_at = ?, reload_ok = 1, reload_error = NULL WHERE id = 1",
                (pid, _iso(now), _iso(now), str(config_path), _iso(now)),
            )

    def daemon_heartbeat(self, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE daemon SET heartbeat_at = ? WHERE id = 1", (_iso(now),))

    def daemon_stopped(self, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE daemon SET stopped_at = ? WHERE id = 1", (_iso(now),))

    def record_reload(self, ok: bool, error: str | None, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE daemon SET reload_at = ?, reload_ok = ?, reload_error = ? WHERE id = 1",
                (_iso(now), int(ok), error),
            )

    def daemon_state(self) -> DaemonState:
        row = self._db.execute("SELECT * FROM daemon WHERE id = 1").fetchone()
        if row is None:
            return DaemonState()
        return DaemonState(
            pid=row["pid"],
            started_at=_time(row["started_at"]),
            heartbeat_at=_time(row["heartbeat_at"]),
            stopped_at=_time(row["stopped_at"]),
            config_path=row["config_path"],
            reload_at=_time(row["reload_at"]),
            reload_ok=bool(row["reload_ok"]),
            reload_error=row["reload_error"],
        )

    # --- history -------------------------------------------------------------------------------------------

    def items_since(self, since: datetime) -> Iterator[tuple[Item, datetime]]:
        """Stored items first seen at or after ``since``, oldest first (for ``alertd replay``)."""
        rows = self._db.execute(
            "SELECT i.key, i.feed_url, i.story_key, i.title, i.summary_text, i.summary_html, i.link,"
            " i.published, i.first_seen, f.name FROM items i LEFT JOIN feeds f ON f.url = i.feed_url"
            " WHERE i.first_seen >= ? ORDER BY i.first_seen, i.key",
            (_iso(since),),
        )
        for row in rows:
            yield _item_from_row(row[:8], feed_name=row[9] or row[1]), datetime.fromisoformat(row[8])

    def counts(self) -> dict[str, int]:
        """Row counts per table (for status and tests)."""
        return {
            table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("feeds", "items", "matches", "outbox", "deliveries")
        }


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _column(row: sqlite3.Row, name: str) -> object:
    return row[name] if name in row.keys() else None  # noqa: SIM118 - sqlite3.Row has no __contains__ on names


def _encode_match(match: Match) -> tuple[str, str, float]:
    spans = [[s.field, s.start, s.end, s.term] for s in match.spans]
    return (
        json.dumps(list(match.terms), ensure_ascii=False),
        json.dumps(spans, ensure_ascii=False),
        match.score,
    )


def _item_from_row(row: Sequence[object], feed_name: str) -> Item:
    key, feed_url, story_key, title, summary_text, summary_html, link, published = row
    return Item(
        key=str(key),
        feed_url=str(feed_url),
        feed_name=feed_name,
        title=str(title),
        summary_text=str(summary_text),
        summary_html=str(summary_html),
        link=_opt_str(link),
        story_key=str(story_key),
        published=_time(_opt_str(published)),
    )


def _matched_from_row(row: Sequence[object]) -> MatchedItem:
    feed_name = _opt_str(row[13]) or str(row[1])
    item = _item_from_row(row[:8], feed_name)
    spans = tuple(Span(str(f), int(str(s)), int(str(e)), str(t)) for f, s, e, t in json.loads(str(row[11])))
    match = Match(
        topic_id=str(row[9]), terms=tuple(json.loads(str(row[10]))), spans=spans, score=float(str(row[12]))
    )
    return MatchedItem(item=item, match=match, first_seen=datetime.fromisoformat(str(row[8])))


def _outbox_from_row(row: Sequence[object]) -> OutboxMessage:
    return OutboxMessage(
        id=int(str(row[0])),
        message_id=str(row[1]),
        subscriber=str(row[2]),
        status=str(row[3]),
        attempts=int(str(row[4])),
        created_at=datetime.fromisoformat(str(row[5])),
        next_attempt_at=datetime.fromisoformat(str(row[6])),
        last_error=_opt_str(row[7]),
        message=bytes(row[8]) if isinstance(row[8], (bytes, bytearray, memoryview)) else b"",
    )
