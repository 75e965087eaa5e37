"""The ``outbox`` table: rendered messages, their attempts and their fate; and the history kept of them.

A message is written with the delivery records of what it carries (:meth:`DigestTables.enqueue_digest`), and
marked sent only after the server (or the mailbox) accepted it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from alertd.config import MIN_RETENTION
from alertd.records import AttemptRecord, OutboxMessage, OutboxStatus
from alertd.store.daemon import write_pause
from alertd.store.rows import OUTBOX_COLUMNS, iso, outbox_from_row, time_or_none
from alertd.store.schema import Database

_NOTE_LIMIT = 500


class OutboxTables(Database):
    """Messages waiting, sent or failed."""

    def due_outbox(self, now: datetime) -> list[OutboxMessage]:
        """Pending messages whose next attempt is due, oldest first."""
        rows = self._db.execute(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox"  # noqa: S608 - a constant
            " WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id",
            (iso(now),),
        ).fetchall()
        return [outbox_from_row(row) for row in rows]

    def claim_next(
        self, now: datetime, claimant: str, until: datetime, trusted_until: datetime
    ) -> OutboxMessage | None:
        """Claim the oldest message due at ``now`` for ``claimant`` until ``until`` (one transaction): it is
        then ``sending`` and no other process attempts it. A claim that expired (its process died) is taken
        over; a time later than ``trusted_until`` counts as past (see :func:`alertd.outbox.claim_window`).
        None when nothing is due."""
        with self.transaction() as db:
            row = db.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox"  # noqa: S608 - a constant
                " WHERE (status = 'pending' AND (next_attempt_at <= ? OR next_attempt_at > ?))"
                " OR (status = 'sending' AND (claimed_until < ? OR claimed_until > ?))"
                " ORDER BY id LIMIT 1",
                (iso(now), iso(trusted_until), iso(now), iso(trusted_until)),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE outbox SET status = 'sending', claimed_by = ?, claimed_until = ? WHERE id = ?",
                (claimant, iso(until), row[0]),
            )
        claimed = outbox_from_row(row)
        return replace(claimed, status="sending", claimed_by=claimant, claimed_until=until)

    def release_claim(self, outbox_id: int, claimant: str) -> bool:
        """Give back a claim ``claimant`` made (its process is gone): the message is due again at once."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (outbox_id, claimant),
            )
        return cursor.rowcount == 1

    def outbox(
        self, statuses: Sequence[OutboxStatus] = ("pending", "sending", "failed")
    ) -> list[OutboxMessage]:
        """Messages in these statuses, oldest first."""
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status IN ({marks}) ORDER BY id",  # noqa: S608 - "?" marks
            tuple(statuses),
        ).fetchall()
        return [outbox_from_row(row) for row in rows]

    def record_attempt(self, attempt: AttemptRecord, now: datetime) -> None:
        """Write what one delivery attempt decided (:func:`alertd.outbox.decide_attempt`), in one transaction:
        sent, deferred to ``next_attempt_at``, failed for good, or not attempted because delivery pauses."""
        note = attempt.note[:_NOTE_LIMIT] if attempt.note else None
        released = "claimed_by = NULL, claimed_until = NULL"
        with self.transaction() as db:
            if attempt.status == "sent":
                db.execute(
                    f"UPDATE outbox SET status = 'sent', sent_at = ?, attempts = ?, last_error = ?, {released}"  # noqa: S608
                    " WHERE id = ?",
                    (iso(now), attempt.attempts, note, attempt.outbox_id),
                )
            elif attempt.status == "failed":
                db.execute(
                    f"UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?, {released} WHERE id = ?",  # noqa: S608
                    (attempt.attempts, note, attempt.outbox_id),
                )
            elif attempt.status == "retry":
                assert attempt.next_attempt_at is not None, "a retry says when"
                db.execute(
                    f"UPDATE outbox SET status = 'pending', attempts = ?, last_error = ?, next_attempt_at = ?, {released}"  # noqa: S608
                    " WHERE id = ?",
                    (attempt.attempts, note, iso(attempt.next_attempt_at), attempt.outbox_id),
                )
            else:  # paused: the message stays due; every message waits until the pause is lifted
                db.execute(
                    f"UPDATE outbox SET status = 'pending', attempts = ?, last_error = ?, {released} WHERE id = ?",  # noqa: S608
                    (attempt.attempts, note, attempt.outbox_id),
                )
                write_pause(db, attempt.pause_reason or note or "", attempt.pause_fingerprint or "", now)

    def requeue(self, outbox_id: int, now: datetime) -> bool:
        """Put a failed or retrying message back in the queue (``alertd outbox retry``), due now.

        Its history stays (attempts so far, last error): the next attempt adds to it. Its retry lifetime starts
        again (``created_at`` becomes now), or the first 4xx would fail it for good.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, created_at = ?,"
                " claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND (status IN ('pending', 'failed') OR (status = 'sending' AND claimed_until < ?))",
                (iso(now), iso(now), outbox_id, iso(now)),
            )
        return cursor.rowcount == 1

    def due_now(self, now: datetime) -> int:
        """Make every deferred message due now (``alertd flush --now``); return how many were deferred."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' AND next_attempt_at > ?",
                (iso(now), iso(now)),
            )
        return cursor.rowcount

    def last_sent_to(self, subscriber: str) -> datetime | None:
        """When a message to ``subscriber`` was last accepted; None if none was (or all were pruned)."""
        row = self._db.execute(
            "SELECT MAX(sent_at) FROM outbox WHERE subscriber = ? AND status = 'sent'", (subscriber,)
        ).fetchone()
        return time_or_none(row[0]) if row else None

    def last_sent_at(self) -> datetime | None:
        """When the last message was accepted."""
        row = self._db.execute("SELECT MAX(sent_at) FROM outbox WHERE status = 'sent'").fetchone()
        return time_or_none(row[0]) if row else None

    def prune_history(self, now: datetime, retention: timedelta = MIN_RETENTION) -> dict[str, int]:
        """Forget mail sent, feed events logged and ``feeds poll`` requests answered more than ``retention`` ago,
        and deliveries of pruned items.

        Messages still pending or failed stay (they are someone's to deal with). Then return free pages to
        the file system, a little at a time, so the database stays bounded in size as well as in rows.
        """
        if retention < MIN_RETENTION:
            raise ValueError(f"retention must be at least {MIN_RETENTION.days} days, got {retention}")
        cutoff = iso(now - retention)
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
            polls = db.execute("DELETE FROM poll_requests WHERE done_at < ?", (cutoff,)).rowcount
        self._db.execute("PRAGMA incremental_vacuum")
        return {"deliveries": deliveries, "outbox": outbox, "feed_events": events, "poll_requests": polls}
