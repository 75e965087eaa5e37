"""The ``items`` and ``matches`` tables: what each feed carried, and which topics it matched.

A poll writes here in one transaction with its feed's new state and events (:meth:`ItemTables.record_poll`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from alertd.config import MIN_RETENTION
from alertd.models import Item, Match, MatchedItem
from alertd.records import PollWrite, StoryCandidate
from alertd.store.feeds import write_events, write_feed
from alertd.store.rows import (
    MATCHED_COLUMNS,
    MATCHED_FROM,
    encode_match,
    iso,
    item_from_row,
    matched_from_row,
    shape_column,
    shape_from_column,
)
from alertd.store.schema import Database

LAST_SEEN_RESOLUTION = timedelta(days=1)
"""An item's ``last_seen`` is refreshed when a poll sees it and it is older than this (see record_poll)."""
_CHUNK = 500
"""Keys per ``IN (...)`` query: SQLite's default limit on host parameters is far above, this keeps each small."""


class ItemTables(Database):
    """Items and their matches."""

    def record_poll(self, write: PollWrite, now: datetime) -> int:
        """Commit one poll in one transaction: the feed's new state, its new items and their matches, the
        sightings of known items, its events. Returns how many items were new."""
        stamp = iso(now)
        with self.transaction(redoable=True) as db:
            write_feed(db, write.feed)
            cursor = db.executemany(
                "INSERT OR IGNORE INTO items (key, feed_url, story_key, title, summary_text, summary_html,"
                " link, published, first_seen, last_seen, link_key, shape)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        item.key,
                        item.feed_url,
                        item.story_key,
                        item.title,
                        item.summary_text,
                        item.summary_html,
                        item.link,
                        iso(item.published) if item.published else None,
                        stamp,
                        stamp,
                        item.link_key,
                        shape_column(item.shape),
                    )
                    for item in write.new_items
                ],
            )
            inserted = max(cursor.rowcount, 0)
            db.executemany(
                "INSERT OR IGNORE INTO story_marks (mark, item_key, first_seen) VALUES (?, ?, ?)",
                [(mark, item.key, stamp) for item in write.new_items for mark in item.marks],
            )
            # last_seen only feeds retention (counted in days, >= 90): rewriting it, and its index, at every
            # poll of every item would be most of a steady poll's writes. It is refreshed once it is a day old.
            stale = iso(now - LAST_SEEN_RESOLUTION)
            db.executemany(
                "UPDATE items SET last_seen = ? WHERE key = ? AND last_seen < ?",
                [(stamp, key, stale) for key in write.seen_keys],
            )
            db.executemany(
                "UPDATE items SET last_seen = ? WHERE feed_url = ? AND link_key = ? AND last_seen < ?",
                [(stamp, write.feed.url, link, stale) for link in write.seen_link_keys],
            )
            write_events(db, write.feed.url, write.events, now)
            db.executemany(
                "INSERT OR IGNORE INTO matches (item_key, topic_id, terms, spans, score, matched_at, alert)"
                " VALUES (?, ?, ?, ?, ?, ?, 1)",
                [(key, m.topic_id, *encode_match(m), stamp) for key, m in write.matches],
            )
        return inserted

    def add_matches(self, matches: Sequence[tuple[str, Match]], now: datetime) -> int:
        """Record matches found outside a poll (``replay --deliver``): they go to digests, never to alerts
        (an alert is news). Existing (item, topic) pairs are kept."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO matches (item_key, topic_id, terms, spans, score, matched_at, alert)"
                " VALUES (?, ?, ?, ?, ?, ?, 0)",
                [(key, m.topic_id, *encode_match(m), iso(now)) for key, m in matches],
            )
            return db.total_changes - before

    def known_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` the store has seen already."""
        wanted = list(keys)
        known: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM items WHERE key IN ({marks})", chunk)  # noqa: S608
            known.update(row[0] for row in rows)
        return known

    def known_link_keys(self, feed_url: str, link_keys: Iterable[str]) -> set[str]:
        """Which of ``link_keys`` an item of this feed already had (the secondary identity, RELIABILITY I2)."""
        wanted = list(link_keys)
        known: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT link_key FROM items WHERE feed_url = ? AND link_key IN ({marks})",  # noqa: S608
                (feed_url, *chunk),
            )
            known.update(row[0] for row in rows)
        return known

    def story_candidates(self, marks: Iterable[str], since: datetime) -> list[StoryCandidate]:
        """Stored items that share one of ``marks`` (see :func:`alertd.stories.marks`): by their link key at
        any age, by their title or SimHash bands if first seen at or after ``since`` (the story window)."""
        wanted = sorted(set(marks))
        found: dict[str, StoryCandidate] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks_sql = ",".join("?" * len(chunk))
            query = (
                "SELECT DISTINCT i.key, i.story_key, i.title, i.first_seen, i.link_key, i.shape"  # noqa: S608
                " FROM story_marks m JOIN items i ON i.key = m.item_key"
                f" WHERE m.mark IN ({marks_sql}) AND (m.first_seen >= ? OR m.mark LIKE 'link:%')"
            )
            rows = self._db.execute(query, (*chunk, iso(since)))
            for row in rows:
                found[row[0]] = StoryCandidate(
                    item_key=row[0],
                    story_key=row[1],
                    title=row[2],
                    first_seen=datetime.fromisoformat(row[3]),
                    link_key=row[4],
                    shape=shape_from_column(row[5]),
                )
        return list(found.values())

    def recent_arrivals(self, feed_url: str, after: datetime, limit: int) -> list[datetime]:
        """First-seen times of the feed's newest ``limit`` items first seen after ``after`` (its seeding)."""
        rows = self._db.execute(
            "SELECT first_seen FROM items WHERE feed_url = ? AND first_seen > ? ORDER BY first_seen DESC LIMIT ?",
            (feed_url, iso(after), limit),
        )
        return [datetime.fromisoformat(row[0]) for row in rows]

    def items_since(self, since: datetime) -> Iterator[tuple[Item, datetime]]:
        """Stored items first seen at or after ``since``, oldest first (for ``alertd replay``)."""
        rows = self._db.execute(
            "SELECT i.key, i.feed_url, i.story_key, i.title, i.summary_text, i.summary_html, i.link,"
            " i.published, i.first_seen, f.name FROM items i LEFT JOIN feeds f ON f.url = i.feed_url"
            " WHERE i.first_seen >= ? ORDER BY i.first_seen, i.key",
            (iso(since),),
        )
        for row in rows:
            yield item_from_row(row[:8], feed_name=row[9] or row[1]), datetime.fromisoformat(row[8])

    def matches_since(self, topics: Sequence[str], since: datetime) -> list[MatchedItem]:
        """Every stored match of ``topics`` made at or after ``since``, delivered or not (``alertd preview
        --since``), oldest first."""
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self._db.execute(
            f"SELECT {MATCHED_COLUMNS} {MATCHED_FROM}"
            f" WHERE m.topic_id IN ({marks}) AND m.matched_at >= ? ORDER BY i.first_seen, i.key",
            (*topics, iso(since)),
        ).fetchall()
        return [matched_from_row(row) for row in rows]

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
                (iso(now - retention - LAST_SEEN_RESOLUTION),),
            )
        return cursor.rowcount
