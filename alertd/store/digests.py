"""The ``subscribers`` and ``deliveries`` tables: who gets what, and which stories already reached whom.

A delivery record is written in the same transaction as the outbox row of the message that carries it
(:meth:`DigestTables.enqueue_digest`): a story is never both queued and still pending.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from alertd.models import MatchedItem
from alertd.records import MessageKind, SubscriberState
from alertd.store.rows import MATCHED_COLUMNS, MATCHED_FROM, iso, matched_from_row
from alertd.store.schema import Database

_UNDELIVERED_DIGEST = (
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber = ? AND d.topic_id = m.topic_id"
    " AND d.kind = 'digest' AND (d.item_key = m.item_key OR d.story_key = i.story_key))"
)
_UNDELIVERED_AT_ALL = (
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber = ? AND d.topic_id = m.topic_id"
    " AND (d.item_key = m.item_key OR d.story_key = i.story_key))"
)


_ALERTABLE = f"m.alert = 1 AND {_UNDELIVERED_AT_ALL}"
"""A match recorded as news, that reached the subscriber neither in an alert nor in a digest."""


def _pending(
    topics: Sequence[str], since: datetime, email: str, undelivered: str
) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (constants and "?" marks only) and its values: matches of ``topics`` made since
    ``since`` that are ``undelivered`` to ``email``."""
    marks = ",".join("?" * len(topics))
    return f"WHERE m.topic_id IN ({marks}) AND m.matched_at >= ? AND {undelivered}", (
        *topics,
        iso(since),
        email,
    )


class DigestTables(Database):
    """Subscribers, what is pending for them, and what reached them."""

    def register_subscribers(self, emails: Iterable[str], now: datetime) -> None:
        """Give each subscriber the store does not know yet a row: they receive matches made from ``now`` on."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO subscribers (email, since, last_digest_at) VALUES (?, ?, ?)",
                [(email, iso(now), iso(now)) for email in emails],
            )

    def subscriber_state(self, email: str) -> SubscriberState | None:
        """What the store knows of a subscriber; None for one it has not met (see register_subscribers)."""
        row = self._db.execute(
            "SELECT since, last_digest_at FROM subscribers WHERE email = ?", (email,)
        ).fetchone()
        if row is None:
            return None
        return SubscriberState(email, datetime.fromisoformat(row[0]), datetime.fromisoformat(row[1]))

    def pending_matches(self, email: str, topics: Sequence[str], since: datetime) -> list[MatchedItem]:
        """Matches of ``topics`` not yet delivered to ``email``, oldest first, matched after ``since``.

        A match whose story (same story key) already reached this subscriber for this topic is not pending:
        the same story seen in another feed later never mails twice.
        """
        if not topics:
            return []
        where, values = _pending(topics, since, email, _UNDELIVERED_DIGEST)
        rows = self._db.execute(
            f"SELECT {MATCHED_COLUMNS} {MATCHED_FROM} {where} ORDER BY i.first_seen, i.key", values
        ).fetchall()
        return [matched_from_row(row) for row in rows]

    def has_pending_matches(self, email: str, topics: Sequence[str], since: datetime) -> bool:
        """Whether :meth:`pending_matches` would return anything (without reading the matches)."""
        if not topics:
            return False
        where, values = _pending(topics, since, email, _UNDELIVERED_DIGEST)
        row = self._db.execute(f"SELECT 1 {MATCHED_FROM} {where} LIMIT 1", values).fetchone()
        return row is not None

    def pending_alerts(
        self, email: str, topics: Sequence[str], since: datetime
    ) -> list[tuple[MatchedItem, datetime]]:
        """Matches of (priority) ``topics`` that may alert and reached ``email`` neither in an alert nor in a
        digest, with the time each was matched, oldest first.

        Only matches recorded as news (``alert``: found by the poll that first saw their item); matches
        added later (``replay --deliver``) go to digests only.
        """
        if not topics:
            return []
        where, values = _pending(topics, since, email, _ALERTABLE)
        rows = self._db.execute(
            f"SELECT {MATCHED_COLUMNS}, m.matched_at {MATCHED_FROM} {where} ORDER BY m.matched_at, i.key",
            values,
        ).fetchall()
        return [(matched_from_row(row[:14]), datetime.fromisoformat(str(row[14]))) for row in rows]

    def first_pending_alert(self, email: str, topics: Sequence[str], since: datetime) -> datetime | None:
        """When the oldest of :meth:`pending_alerts` was matched; None when there is none."""
        if not topics:
            return None
        where, values = _pending(topics, since, email, _ALERTABLE)
        row = self._db.execute(f"SELECT MIN(m.matched_at) {MATCHED_FROM} {where}", values).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

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

    def enqueue_digest(
        self,
        email: str,
        message_id: str,
        message: bytes,
        included: Sequence[MatchedItem],
        now: datetime,
        *,
        kind: MessageKind = "digest",
    ) -> int | None:
        """Store a rendered digest (or ``kind="alert"``) and mark its matches delivered, in one transaction.

        Returns the outbox id, or None when a message with this Message-ID is already queued (a retried
        build after a crash produces the same id and must not queue twice), or when another process (a
        ``flush`` beside the daemon) queued one of these matches since they were read: they went out with
        it. A digest serves the subscriber's schedule (``last_digest_at`` becomes ``now``); an alert does not.
        """
        with self.transaction() as db:
            for m in included:  # another process queued a message carrying one of these since they were read
                taken = db.execute(
                    "SELECT 1 FROM deliveries WHERE subscriber = ? AND item_key = ? AND topic_id = ? AND kind = ?",
                    (email, m.item.key, m.match.topic_id, kind),
                ).fetchone()
                if taken is not None:
                    return None
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, subscriber, created_at, next_attempt_at, message, kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, email, iso(now), iso(now), message, kind),
            )
            outbox_id = cursor.lastrowid if cursor.rowcount else None
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (subscriber, item_key, topic_id, story_key, outbox_id, kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(email, m.item.key, m.match.topic_id, m.item.story_key, outbox_id, kind) for m in included],
            )
            if kind == "digest":
                db.execute("UPDATE subscribers SET last_digest_at = ? WHERE email = ?", (iso(now), email))
        return outbox_id

    def mark_digest_time(self, email: str, now: datetime) -> None:
        """A digest was due but had nothing to say: its schedule was served all the same."""
        with self.transaction() as db:
            db.execute("UPDATE subscribers SET last_digest_at = ? WHERE email = ?", (iso(now), email))
