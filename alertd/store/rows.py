"""Between SQLite rows and records: times as ISO 8601 UTC text, matches as JSON, rows as frozen records."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, cast

from alertd.models import Item, Match, MatchedItem, Span
from alertd.records import FeedState, OutboxMessage

UTC = timezone.utc  # datetime.UTC is Python 3.11+

MATCHED_COLUMNS = (
    "i.key, i.feed_url, i.story_key, i.title, i.summary_text, i.summary_html, i.link,"
    " i.published, i.first_seen, m.topic_id, m.terms, m.spans, m.score, f.name"
)
"""The columns :func:`matched_from_row` reads, in its order."""
MATCHED_FROM = "FROM matches m JOIN items i ON i.key = m.item_key LEFT JOIN feeds f ON f.url = i.feed_url"
OUTBOX_COLUMNS = (
    "id, message_id, subscriber, status, attempts, created_at, next_attempt_at, last_error, message, kind,"
    " claimed_by, claimed_until"
)
"""The columns :func:`outbox_from_row` reads, in its order."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def time_or_none(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def column(row: sqlite3.Row, name: str) -> object:
    """A column that a database opened read-only, and not yet migrated, may lack."""
    return row[name] if name in row.keys() else None  # noqa: SIM118 - sqlite3.Row has no __contains__ on names


def shape_column(shape: int | None) -> int | None:
    """A 64-bit SimHash as SQLite's signed 64-bit INTEGER."""
    return None if shape is None else shape - (1 << 64) if shape >= 1 << 63 else shape


def shape_from_column(value: object) -> int | None:
    return None if value is None else int(str(value)) & ((1 << 64) - 1)


def encode_match(match: Match) -> tuple[str, str, float]:
    spans = [[s.field, s.start, s.end, s.term] for s in match.spans]
    return (
        json.dumps(list(match.terms), ensure_ascii=False),
        json.dumps(spans, ensure_ascii=False),
        match.score,
    )


def feed_from_row(values: sqlite3.Row) -> FeedState:
    return FeedState(
        url=str(values["url"]),
        name=str(values["name"]),
        etag=opt_str(values["etag"]),
        last_modified=opt_str(values["last_modified"]),
        body_hash=opt_str(values["body_hash"]),
        first_success_at=time_or_none(opt_str(values["first_success_at"])),
        last_success_at=time_or_none(opt_str(values["last_success_at"])),
        last_error_at=time_or_none(opt_str(values["last_error_at"])),
        last_error_class=cast(Any, opt_str(values["last_error_class"])),
        last_error=opt_str(values["last_error"]),
        consecutive_failures=int(str(values["consecutive_failures"])),
        next_poll_at=time_or_none(opt_str(values["next_poll_at"])),
        gone=bool(values["gone"]),
        effective_url=opt_str(column(values, "effective_url")),
        redirect_candidate=opt_str(column(values, "redirect_candidate")),
        redirect_count=int(str(column(values, "redirect_count") or 0)),
        moved_at=time_or_none(opt_str(column(values, "moved_at"))),
        last_new_at=time_or_none(opt_str(column(values, "last_new_at"))),
        ttl_minutes=opt_int(column(values, "ttl_minutes")),
        flood_notice_at=time_or_none(opt_str(column(values, "flood_notice_at"))),
    )


def item_from_row(row: Sequence[object], feed_name: str) -> Item:
    key, feed_url, story_key, title, summary_text, summary_html, link, published = row
    return Item(
        key=str(key),
        feed_url=str(feed_url),
        feed_name=feed_name,
        title=str(title),
        summary_text=str(summary_text),
        summary_html=str(summary_html),
        link=opt_str(link),
        story_key=str(story_key),
        published=time_or_none(opt_str(published)),
    )


def matched_from_row(row: Sequence[object]) -> MatchedItem:
    feed_name = opt_str(row[13]) or str(row[1])
    item = item_from_row(row[:8], feed_name)
    spans = tuple(Span(str(f), int(str(s)), int(str(e)), str(t)) for f, s, e, t in json.loads(str(row[11])))
    match = Match(
        topic_id=str(row[9]), terms=tuple(json.loads(str(row[10]))), spans=spans, score=float(str(row[12]))
    )
    return MatchedItem(item=item, match=match, first_seen=datetime.fromisoformat(str(row[8])))


def outbox_from_row(row: Sequence[object]) -> OutboxMessage:
    return OutboxMessage(
        id=int(str(row[0])),
        message_id=str(row[1]),
        subscriber=str(row[2]),
        status=cast(Any, str(row[3])),
        attempts=int(str(row[4])),
        created_at=datetime.fromisoformat(str(row[5])),
        next_attempt_at=datetime.fromisoformat(str(row[6])),
        last_error=opt_str(row[7]),
        message=bytes(row[8]) if isinstance(row[8], (bytes, bytearray, memoryview)) else b"",
        kind=cast(Any, str(row[9] or "digest")),
        claimed_by=opt_str(row[10]),
        claimed_until=time_or_none(opt_str(row[11])),
    )
