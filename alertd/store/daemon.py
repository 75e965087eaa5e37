"""The ``daemon`` row: what the running (or last) daemon says about itself, the SMTP delivery pause, and the
polls other commands ask it for (``poll_requests``: ``alertd feeds poll`` beside a running daemon).

``alertd status`` reads it from another process, read-only, whether or not the daemon runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from alertd.records import DaemonState, DeliveryPause
from alertd.store.rows import iso, time_or_none
from alertd.store.schema import Database


def write_pause(db: sqlite3.Connection, reason: str, config_fingerprint: str, now: datetime) -> None:
    """Pause SMTP delivery (inside the caller's transaction)."""
    db.execute(
        "UPDATE daemon SET delivery_paused_at = ?, delivery_paused_reason = ?, delivery_paused_config = ?"
        " WHERE id = 1",
        (iso(now), reason[:500], config_fingerprint),
    )


class DaemonTables(Database):
    """The daemon's own row."""

    def daemon_started(self, pid: int, config_path: Path, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE daemon SET pid = ?, started_at = ?, heartbeat_at = ?, stopped_at = NULL, config_path = ?,"
                " reload_at = ?, reload_ok = 1, reload_error = NULL WHERE id = 1",
                (pid, iso(now), iso(now), str(config_path), iso(now)),
            )

    def daemon_heartbeat(self, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE daemon SET heartbeat_at = ? WHERE id = 1", (iso(now),))

    def daemon_stopped(self, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE daemon SET stopped_at = ? WHERE id = 1", (iso(now),))

    def record_reload(self, ok: bool, error: str | None, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE daemon SET reload_at = ?, reload_ok = ?, reload_error = ? WHERE id = 1",
                (iso(now), int(ok), error),
            )

    def daemon_state(self) -> DaemonState:
        row = self._db.execute("SELECT * FROM daemon WHERE id = 1").fetchone()
        if row is None:
            return DaemonState()
        return DaemonState(
            pid=row["pid"],
            started_at=time_or_none(row["started_at"]),
            heartbeat_at=time_or_none(row["heartbeat_at"]),
            stopped_at=time_or_none(row["stopped_at"]),
            config_path=row["config_path"],
            reload_at=time_or_none(row["reload_at"]),
            reload_ok=bool(row["reload_ok"]),
            reload_error=row["reload_error"],
        )

    def request_polls(self, urls: Sequence[str], now: datetime) -> list[int]:
        """Ask the running daemon to poll these feeds now; the ids to wait on (:meth:`poll_outcomes`)."""
        with self.transaction() as db:
            return [
                int(
                    db.execute(
                        "INSERT INTO poll_requests (feed_url, requested_at) VALUES (?, ?)", (url, iso(now))
                    ).lastrowid
                    or 0
                )
                for url in urls
            ]

    def open_poll_requests(self) -> list[tuple[int, str]]:
        """(id, feed URL) of the polls asked for and not done yet, oldest first (the daemon reads them)."""
        rows = self._db.execute("SELECT id, feed_url FROM poll_requests WHERE done_at IS NULL ORDER BY id")
        return [(int(row[0]), str(row[1])) for row in rows]

    def answer_poll_request(self, request_id: int, outcome: str, failed: bool, now: datetime) -> None:
        """Record what the poll asked for came to: its one-line outcome, and whether the poll failed."""
        with self.transaction(redoable=True) as db:
            db.execute(
                "UPDATE poll_requests SET done_at = ?, outcome = ?, failed = ? WHERE id = ?",
                (iso(now), outcome, int(failed), request_id),
            )

    def poll_outcomes(self, request_ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
        """The outcome of each of these requests the daemon has answered, and whether its poll failed."""
        marks = ",".join("?" * len(request_ids))
        rows = self._db.execute(
            f"SELECT id, outcome, failed FROM poll_requests WHERE done_at IS NOT NULL AND id IN ({marks})",  # noqa: S608
            tuple(request_ids),
        )
        return {int(row[0]): (str(row[1]), bool(row[2])) for row in rows}

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
