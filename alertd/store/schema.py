"""The database itself: opening it, its numbered append-only migrations, and the one-transaction step.

Migrations are applied in one transaction each; ``PRAGMA user_version`` records how far a database is. A
database from a newer alertd is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from alertd.errors import StateWriteError, StoreError
from alertd.failpoint import failpoint, state_full

_WRITE_FAILURES = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "an I/O error",
    sqlite3.SQLITE_READONLY: "the file is read-only",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened",
    sqlite3.SQLITE_BUSY: "another process holds the database",
    sqlite3.SQLITE_LOCKED: "the database is locked",
}

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
    # 5: rules become data. Whether a match may go out as a priority alert is recorded with it (a poll's
    # matches may, a replay's may not) instead of being inferred from matched_at = first_seen; when the flood
    # guard last recorded a notice for a feed is kept on the feed, so a poll reads it with the feed's state.
    """
    ALTER TABLE matches ADD COLUMN alert INTEGER NOT NULL DEFAULT 0;
    UPDATE matches SET alert = 1
        WHERE matched_at = (SELECT first_seen FROM items WHERE items.key = matches.item_key);
    ALTER TABLE feeds ADD COLUMN flood_notice_at TEXT;
    UPDATE feeds SET flood_notice_at =
        (SELECT MAX(at) FROM feed_events e WHERE e.feed_url = feeds.url AND e.kind = 'flood');
    """,
    # 6: exactly once across processes. A message is claimed before any attempt (status 'sending', by whom,
    # until when): the daemon, `flush` and `run --once` never attempt the same message at once, and a claim
    # left by a killed process expires. When a poll last brought new items is kept on the feed: the flood
    # guard's window starts there.
    """
    CREATE TABLE outbox_v6 (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        subscriber TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT,
        message BLOB NOT NULL,
        kind TEXT NOT NULL DEFAULT 'digest',
        claimed_by TEXT,
        claimed_until TEXT
    );
    INSERT INTO outbox_v6 (id, message_id, subscriber, created_at, status, attempts, next_attempt_at, last_error,
        sent_at, message, kind)
        SELECT id, message_id, subscriber, created_at, status, attempts, next_attempt_at, last_error, sent_at,
            message, kind FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v6 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    ALTER TABLE feeds ADD COLUMN last_new_at TEXT;
    UPDATE feeds SET last_new_at = (SELECT MAX(first_seen) FROM items i WHERE i.feed_url = feeds.url);
    """,
    # 7: stories, not links. An item's story key may now be another item's (a copy of its story under another
    # URL, see alertd.stories); each item that can reach a reader is indexed by the marks a later copy finds it
    # by (its link key, its title words, the bands of its SimHash), and keeps its SimHash to be compared.
    """
    ALTER TABLE items ADD COLUMN shape INTEGER;
    CREATE TABLE story_marks (
        mark TEXT NOT NULL,
        item_key TEXT NOT NULL REFERENCES items (key) ON DELETE CASCADE,
        first_seen TEXT NOT NULL,
        PRIMARY KEY (mark, item_key)
    ) WITHOUT ROWID;
    CREATE INDEX story_marks_by_item ON story_marks (item_key);
    """,
    # 8: `alertd feeds poll` beside a running daemon asks it, rather than polling a second time itself: a request
    # per feed, answered by the daemon with the poll's outcome.
    """
    CREATE TABLE poll_requests (
        id INTEGER PRIMARY KEY,
        feed_url TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        done_at TEXT,
        outcome TEXT,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX poll_requests_open ON poll_requests (done_at);
    """,
)


def database_uri(path: Path, *, readonly: bool) -> str:
    """The ``file:`` URI of ``path``, escaped so that any file name works (``#``, ``?``, ``%``, spaces)."""
    mode = "ro" if readonly else "rwc"
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


class Database:
    """The connection, its transactions and its schema; the table modules add what they read and write."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Database:
        """Open (creating and migrating unless ``readonly``) the database at ``path``."""
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                database_uri(path, readonly=readonly), uri=True, isolation_level=None, timeout=30
            )
            if not readonly:
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
        database = cls(connection, path)
        if not readonly:
            database._migrate()
        return database

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Database:
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
        try:
            failpoint_state_full()
            self._db.execute(f"PRAGMA synchronous={'NORMAL' if redoable else 'FULL'}")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _write_error(self.path, exc) from exc
        try:
            yield self._db
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _cannot_write(exc):
                raise _write_error(self.path, exc) from exc
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise _write_error(self.path, exc) from exc

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this alertd "
                f"({len(MIGRATIONS)}); upgrade alertd"
            )
        # Rebuilding a table that others reference (migration 6) drops it first: foreign keys are off while a
        # migration runs (the pragma only takes effect outside a transaction), and checked before it commits.
        self._db.execute("PRAGMA foreign_keys=OFF")
        try:
            for number in range(version, len(MIGRATIONS)):
                with self.transaction() as db:
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            db.execute(statement)
                    broken = db.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(
                            f"{self.path}: migration {number + 1} broke references: {broken[:5]}"
                        )
                    failpoint("mid_migration")
                    db.execute(f"PRAGMA user_version = {number + 1}")
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Row counts per table (for status and tests)."""
        return {
            table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("feeds", "items", "matches", "outbox", "deliveries")
        }


def failpoint_state_full() -> None:
    """The ``state_full`` fail point: while its flag file exists, every write fails as on a full disk."""
    if state_full():
        raise sqlite3.OperationalError("database or disk is full (fail point state_full)")


def _cannot_write(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _WRITE_FAILURES) or "disk is full" in str(exc)


def _write_error(path: Path, exc: sqlite3.OperationalError) -> StateWriteError:
    code = getattr(exc, "sqlite_errorcode", None)
    why = _WRITE_FAILURES.get(code & 0xFF, str(exc)) if code is not None else str(exc)
    return StateWriteError(f"{path}: the state cannot be written ({why}: {exc})")
