"""Writing state the way the pipeline does, for tests that set a scene in a real store without polling.

The store only writes what it is given; these helpers give it what a poll, a failed poll or a delivery
attempt would have decided (through the deciders' own rules where there is one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from alertd.models import ErrorClass, Item, Match
from alertd.polling import failed_state
from alertd.records import AttemptRecord, FeedEventKind, FeedState, PollWrite
from alertd.store import Store
from alertd.store.daemon import write_pause


def record_poll(
    store: Store,
    url: str,
    etag: str | None,
    last_modified: str | None,
    body_hash: str | None,
    new_items: Sequence[Item],
    seen_keys: Sequence[str],
    matches: Sequence[tuple[str, Match]],
    next_poll_at: datetime | None,
    at: datetime,
    *,
    seen_link_keys: Sequence[str] = (),
    name: str | None = None,
    events: Sequence[tuple[FeedEventKind, str]] = (),
    moved_to: str | None = None,
) -> int:
    """A successful poll of ``url`` at ``at`` that found ``new_items`` and their ``matches`` (and with
    ``moved_to``, confirmed the feed's permanent redirect there)."""
    state = store.feed_state(url, name or url)
    feed = dataclasses.replace(
        state,
        etag=etag,
        last_modified=last_modified,
        body_hash=body_hash or state.body_hash,
        first_success_at=state.first_success_at or at,
        last_success_at=at,
        consecutive_failures=0,
        next_poll_at=next_poll_at,
        gone=False,
        effective_url=moved_to or state.effective_url,
        moved_at=at if moved_to else state.moved_at,
    )
    return store.record_poll(PollWrite(feed, new_items, seen_keys, seen_link_keys, events, matches), at)


def record_failure(
    store: Store, url: str, error_class: ErrorClass, message: str, at: datetime, next_poll_at: datetime | None
) -> None:
    """A failed poll of ``url`` (``error_class`` "gone": it answered 410)."""
    state = failed_state(store.feed_state(url, url), error_class, message, at, next_poll_at)
    _save(store, dataclasses.replace(state, gone=state.gone or error_class == "gone"))


def record_not_modified(store: Store, url: str, at: datetime, next_poll_at: datetime | None) -> None:
    """A poll of ``url`` answered 304."""
    state = store.feed_state(url, url)
    _save(
        store,
        dataclasses.replace(state, last_success_at=at, consecutive_failures=0, next_poll_at=next_poll_at),
    )


def register(store: Store, email: str, at: datetime) -> None:
    store.register_subscribers([email], at)


def mark_sent(store: Store, outbox_id: int, at: datetime, note: str | None = None) -> None:
    store.record_attempt(AttemptRecord(outbox_id, "sent", _attempts(store, outbox_id) + 1, note=note), at)


def mark_retry(store: Store, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
    attempt = AttemptRecord(
        outbox_id, "retry", _attempts(store, outbox_id) + 1, note=error, next_attempt_at=next_attempt_at
    )
    store.record_attempt(attempt, next_attempt_at)


def mark_failed(store: Store, outbox_id: int, error: str, at: datetime) -> None:
    store.record_attempt(AttemptRecord(outbox_id, "failed", _attempts(store, outbox_id) + 1, note=error), at)


def _attempts(store: Store, outbox_id: int) -> int:
    return next(m.attempts for m in store.outbox(("pending", "sent", "failed")) if m.id == outbox_id)


def add_feed(store: Store, url: str, name: str) -> None:
    """A feed the store knows by name, never polled (as the daemon's first look at a configured feed)."""
    _save(store, FeedState(url=url, name=name))


def pause_delivery(store: Store, reason: str, fingerprint: str, at: datetime) -> None:
    """SMTP delivery paused (as an attempt refused with 535 pauses it)."""
    with store.transaction() as db:
        write_pause(db, reason, fingerprint, at)


def _save(store: Store, state: FeedState) -> None:
    """A poll that recorded only the feed's new state."""
    store.record_poll(PollWrite(state), state.last_success_at or state.last_error_at or datetime.now(UTC))
