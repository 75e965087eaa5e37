"""The ``feeds`` and ``feed_events`` tables: each feed's polling state, and what happened to it worth telling."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from alertd.records import FeedEvent, FeedEventKind, FeedState
from alertd.store.rows import feed_from_row, iso, iso_or_none
from alertd.store.schema import Database

_FEED_COLUMNS = (
    "url",
    "name",
    "etag",
    "last_modified",
    "body_hash",
    "first_success_at",
    "last_success_at",
    "last_error_at",
    "last_error_class",
    "last_error",
    "consecutive_failures",
    "next_poll_at",
    "gone",
    "effective_url",
    "redirect_candidate",
    "redirect_count",
    "moved_at",
    "last_new_at",
    "ttl_minutes",
    "flood_notice_at",
)
_WRITE_FEED = (
    f"INSERT INTO feeds ({', '.join(_FEED_COLUMNS)}) VALUES ({', '.join('?' * len(_FEED_COLUMNS))})"  # noqa: S608
    f" ON CONFLICT (url) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _FEED_COLUMNS[1:])}"
)


def write_feed(db: sqlite3.Connection, state: FeedState) -> None:
    """Store ``state`` as the feed's whole row (inside the caller's transaction)."""
    db.execute(
        _WRITE_FEED,
        (
            state.url,
            state.name,
            state.etag,
            state.last_modified,
            state.body_hash,
            iso_or_none(state.first_success_at),
            iso_or_none(state.last_success_at),
            iso_or_none(state.last_error_at),
            state.last_error_class,
            state.last_error[:500] if state.last_error else None,
            state.consecutive_failures,
            iso_or_none(state.next_poll_at),
            int(state.gone),
            state.effective_url,
            state.redirect_candidate,
            state.redirect_count,
            iso_or_none(state.moved_at),
            iso_or_none(state.last_new_at),
            state.ttl_minutes,
            iso_or_none(state.flood_notice_at),
        ),
    )


def write_events(
    db: sqlite3.Connection, feed_url: str, events: Sequence[tuple[FeedEventKind, str]], at: datetime
) -> None:
    db.executemany(
        "INSERT INTO feed_events (feed_url, at, kind, message) VALUES (?, ?, ?, ?)",
        [(feed_url, iso(at), kind, message) for kind, message in events],
    )


class FeedTables(Database):
    """Reads of the feed tables (a poll writes them with its items: :meth:`ItemTables.record_poll`)."""

    def feed_state(self, url: str, name: str) -> FeedState:
        """The stored state of a feed; a feed never polled gets a blank state named ``name``."""
        row = self._db.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        return FeedState(url=url, name=name) if row is None else feed_from_row(row)

    def reschedule_feed(self, url: str, next_poll_at: datetime) -> None:
        """Record a feed's next poll decided outside a poll (a reload changed its interval): the time a
        restart, ``alertd feeds`` and ``alertd status`` read."""
        with self.transaction() as db:
            db.execute("UPDATE feeds SET next_poll_at = ? WHERE url = ?", (iso(next_poll_at), url))

    def feeds(self) -> list[FeedState]:
        """Every feed the store knows, the failing ones first."""
        rows = self._db.execute("SELECT * FROM feeds ORDER BY consecutive_failures DESC, name").fetchall()
        return [feed_from_row(row) for row in rows]

    def feed_events(
        self, since: datetime, kind: FeedEventKind | None = None, feed_url: str | None = None
    ) -> list[FeedEvent]:
        """Feed events (flood guard, moves) recorded at or after ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT e.feed_url, COALESCE(f.name, e.feed_url), e.at, e.kind, e.message FROM feed_events e"
            " LEFT JOIN feeds f ON f.url = e.feed_url WHERE e.at >= ? AND (? IS NULL OR e.kind = ?)"
            " AND (? IS NULL OR e.feed_url = ?) ORDER BY e.at, e.id",
            (iso(since), kind, kind, feed_url, feed_url),
        )
        return [
            FeedEvent(str(r[0]), str(r[1]), datetime.fromisoformat(r[2]), cast(Any, str(r[3])), str(r[4]))
            for r in rows
        ]
