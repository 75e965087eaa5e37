"""Records that cross the store's boundary, named by direction (reader's ``FeedForUpdate`` / ``FeedUpdateIntent``).

What the store hands out (``FeedState``, ``FeedEvent``, ``SubscriberState``, ``StoryCandidate``, ``OutboxMessage``,
``DeliveryPause``, ``DaemonState``) and what it is asked to write (``PollWrite``, ``AttemptRecord``). The deciders read the first kind
and produce the second; the store only moves them between Python and SQL. Plain frozen data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from alertd.models import ErrorClass, Item, Match

FeedEventKind = Literal["flood", "moved"]
OutboxStatus = Literal["pending", "sending", "sent", "failed"]
"""pending: waiting for its (next) attempt; sending: claimed by a process attempting it now."""
MessageKind = Literal["digest", "alert"]
AttemptStatus = Literal["sent", "retry", "failed", "paused"]
"""What a delivery attempt amounted to: accepted; deferred (4xx, timeout...); refused for good (5xx); or no
attempt at all because SMTP delivery is paused on a configuration error (535, no STARTTLS)."""


# --- handed out by the store ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of a feed between polls; also what a poll asks it to write back, whole."""

    url: str
    """The feed's identity: its URL in the config (even after it moved, see ``effective_url``)."""
    name: str
    etag: str | None = None
    """The validators the next conditional GET sends."""
    last_modified: str | None = None
    body_hash: str | None = None
    """SHA-256 of the last body parsed: the same bytes again are not parsed again."""
    first_success_at: datetime | None = None
    """The first poll that succeeded: the feed was seeded then."""
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error_class: ErrorClass | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    """Failed polls since the last success; 0 while the feed is healthy."""
    next_poll_at: datetime | None = None
    """When the daemon polls it next (decided by the poll before); None: as soon as it starts."""
    gone: bool = False
    """The feed answered 410 Gone: it is not polled any more."""
    effective_url: str | None = None
    """Where the feed is fetched from since a confirmed permanent redirect; None: its config URL."""
    redirect_candidate: str | None = None
    """The target of the permanent redirect the last polls saw, not yet confirmed."""
    redirect_count: int = 0
    """Consecutive polls that saw the same permanent redirect to ``redirect_candidate`` and parsed."""
    moved_at: datetime | None = None
    last_new_at: datetime | None = None
    """When a poll last brought new items: the flood guard's window starts there at the latest."""
    ttl_minutes: int | None = None
    """The feed's own ``<ttl>`` (RSS), remembered for polls that answer 304."""
    flood_notice_at: datetime | None = None
    """When the flood guard last recorded a notice for this feed (at most one a day)."""

    @property
    def seeded(self) -> bool:
        """True once the feed has been polled successfully at least once."""
        return self.first_success_at is not None


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """Something about a feed worth telling its readers once: a flood held back, a move."""

    feed_url: str
    feed_name: str
    """The feed's name when the event is read (its URL if the store no longer knows the feed)."""
    at: datetime
    """When the poll that saw it ran."""
    kind: FeedEventKind
    message: str
    """What happened, in English (digests say it in the reader's language from ``kind``)."""


@dataclass(frozen=True, slots=True)
class SubscriberState:
    """What the store remembers of a subscriber."""

    email: str
    since: datetime
    """When alertd first met the subscriber: matches made before are not theirs."""
    last_digest_at: datetime
    """When their schedule was last served (a digest sent, or considered with nothing to say)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A rendered message waiting in (or done with) the outbox."""

    id: int
    message_id: str
    subscriber: str
    status: OutboxStatus
    attempts: int
    """Delivery attempts so far (a paused delivery counts its attempt too)."""
    created_at: datetime
    """When it was queued: its retry lifetime counts from here."""
    next_attempt_at: datetime
    last_error: str | None
    """Why the last attempt failed; for a sent message, the recipients the server refused, if any."""
    message: bytes
    """The message as sent, CRLF line endings (``email.policy.SMTP``)."""
    kind: MessageKind = "digest"
    claimed_by: str | None = None
    """sending: the process attempting it (``pid 1234 (daemon)``)."""
    claimed_until: datetime | None = None
    """sending: when the claim expires if that process dies; another may then attempt it, same Message-ID."""


@dataclass(frozen=True, slots=True)
class DeliveryPause:
    """SMTP delivery stopped on a configuration error; messages wait, pending, until it is lifted."""

    since: datetime
    reason: str
    config_fingerprint: str
    """The delivery settings in force when it paused: different settings lift the pause."""


@dataclass(frozen=True, slots=True)
class DaemonState:
    """What the running (or last) daemon wrote about itself."""

    pid: int | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    """Written every 30 s while the daemon runs and can write its state."""
    stopped_at: datetime | None = None
    """Set by a clean stop; None after a crash (the state lock tells whether it still runs)."""
    config_path: str | None = None
    reload_at: datetime | None = None
    reload_ok: bool = True
    """False when the last reload failed and the previous configuration is still running."""
    reload_error: str | None = None


@dataclass(frozen=True, slots=True)
class StoryCandidate:
    """A stored item that a new item may be a copy of, found by one of its marks (:func:`alertd.stories.marks`)."""

    item_key: str
    story_key: str
    """The story it belongs to: what a copy of it takes as its own."""
    title: str
    first_seen: datetime
    link_key: str | None
    shape: int | None
    """Its SimHash (None: too few words to have one)."""


# --- what the store is asked to write ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollWrite:
    """Everything one poll of one feed writes, in one transaction."""

    feed: FeedState
    """The feed's whole new state, as the poll decided it (the store overwrites the row with it)."""
    new_items: Sequence[Item] = ()
    """Items seen for the first time (their first and last sighting is this poll)."""
    seen_keys: Sequence[str] = ()
    """Keys of known items still in the feed: their last sighting is refreshed (daily at most)."""
    seen_link_keys: Sequence[str] = ()
    """Link keys of items known by their link only (their GUID changed): their last sighting is refreshed too."""
    events: Sequence[tuple[FeedEventKind, str]] = ()
    """Feed events to record: (kind, message)."""
    matches: Sequence[tuple[str, Match]] = ()
    """(item key, match) found by this poll: news, so they may go out as priority alerts."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one delivery attempt of one outbox message writes."""

    outbox_id: int
    status: AttemptStatus
    attempts: int
    """The message's attempt count after this attempt."""
    note: str | None = None
    """The error to keep (retry, failed, paused), or the recipients refused on the way (sent)."""
    next_attempt_at: datetime | None = None
    """retry: when to try again."""
    pause_reason: str | None = None
    """paused: why SMTP delivery stops for every message until someone acts."""
    pause_fingerprint: str | None = None
    """paused: the delivery settings in force (different settings lift the pause)."""
    claimant: str | None = None
    """Who attempted it (its claim is released with this record)."""
