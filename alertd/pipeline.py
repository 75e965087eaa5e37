"""Where the stages meet the network, the disk and the clock: poll a feed, flush digests, drain the outbox.

Each function loads what it needs from the store, runs the pure stages, and saves the outcome in one
transaction. The pure stages decide; these functions only carry data between them and the outside world.

    poll_feed:     store → fetch → parse (worker) → identify → match → store
    flush_digests: store → digest → render → store (outbox row + delivered marks, one transaction)
    drain_outbox:  store → deliver → store (sent / retry / failed)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import jinja2

from alertd import schedule
from alertd.config import Config, FeedConfig, SubscriberConfig
from alertd.deliver import deliver
from alertd.digest import build_digest, digest_id_for
from alertd.errors import ParseError, PermanentDeliveryError, TransientDeliveryError
from alertd.failpoint import failpoint
from alertd.fetch import FetchPolicy, fetch_feed
from alertd.identify import identify
from alertd.match import match_item
from alertd.models import FeedHealth, FetchStatus, Item, Match
from alertd.parse import ParserPool
from alertd.render import render_digest
from alertd.store import FeedState, PollOutcome, Store
from alertd.watchlist import Watchlist

log = logging.getLogger("alertd.pipeline")

RETRY_FIRST = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
RETRY_LIFETIME = timedelta(hours=24)
FAILING_FEED_NOTICE_AFTER = timedelta(hours=6)


@dataclass
class Runtime:
    """Everything the pipeline steps share, built once from a config (and rebuilt on reload)."""

    config: Config
    watchlist: Watchlist
    store: Store
    client: httpx.AsyncClient
    parser: ParserPool
    templates: jinja2.Environment
    fetch_policy: FetchPolicy
    smtp_password: str | None = None
    rng: random.Random = field(default_factory=random.Random)
    # One drain at a time: two concurrent drains would both pick the same due message and send it twice.
    delivery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll of one feed did, for logs and the exit status of ``run --once``."""

    url: str
    name: str
    status: str  # ok | not_modified | unchanged | seeded | gone | error | skipped
    new_items: int = 0
    matches: int = 0
    error_class: str | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("error", "gone")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """The outcome of one outbox message's delivery attempt."""

    outbox_id: int
    subscriber: str
    status: str  # sent | retry | failed
    error: str | None = None


# --- polling -------------------------------------------------------------------------------------------------


async def poll_feed(rt: Runtime, feed: FeedConfig, now: datetime) -> PollReport:
    """Fetch, parse, identify and match one feed; commit its new items and matches in one transaction."""
    state = rt.store.feed_state(feed.url, feed.name)
    if state.gone:
        return PollReport(feed.url, feed.name, "skipped", error="feed is gone (HTTP 410); remove it from the config")
    result = await fetch_feed(
        rt.client, feed.url, etag=state.etag, last_modified=state.last_modified, policy=rt.fetch_policy
    )
    interval = feed.interval or rt.config.poll.interval
    next_poll = now + schedule.poll_delay(interval, rt.config.poll.jitter, rt.rng)
    if result.status is FetchStatus.NOT_MODIFIED:
        rt.store.record_not_modified(feed.url, now, next_poll)
        return PollReport(feed.url, feed.name, "not_modified")
    if result.status is FetchStatus.GONE:
        rt.store.record_failure(feed.url, "gone", "HTTP 410 Gone: polling stopped", now, None)
        log.error("feed %s (%s) is gone (HTTP 410): polling stopped", feed.name, feed.url)
        return PollReport(feed.url, feed.name, "gone", error_class="gone", error="HTTP 410 Gone")
    if result.status is FetchStatus.ERROR:
        return _record_error(rt, feed, state, result.error_class or "error", result.error or "", now)

    body_hash = hashlib.sha256(result.body).hexdigest()
    if body_hash == state.body_hash:
        rt.store.record_poll(_outcome(feed.url, result.etag, result.last_modified, body_hash, next_poll), now)
        return PollReport(feed.url, feed.name, "unchanged")
    try:
        parsed = await rt.parser.parse(result.body, result.headers, feed.url)
    except ParseError as exc:
        return _record_error(rt, feed, state, "parse_error", str(exc), now)

    items = identify(parsed.entries, feed.url, feed.name, frozenset(feed.tags), now)
    known = rt.store.known_keys(item.key for item in items)
    new_items = [item for item in items if item.key not in known]
    seeding = not state.seeded and rt.config.poll.first_poll == "seed"
    matches = [] if seeding else match_new_items(rt.watchlist, new_items)
    outcome = _outcome(
        feed.url,
        result.etag,
        result.last_modified,
        body_hash,
        next_poll,
        new_items=new_items,
        seen_keys=[item.key for item in items if item.key in known],
        matches=matches,
    )
    failpoint("after_fetch_before_commit")
    rt.store.record_poll(outcome, now)
    failpoint("after_poll_commit")
    status = "seeded" if seeding else "ok"
    if seeding:
        log.info("feed %s: first poll, %d items marked seen without alerting", feed.name, len(new_items))
    elif new_items:
        log.info("feed %s: %d new items, %d matches", feed.name, len(new_items), len(matches))
    return PollReport(feed.url, feed.name, status, new_items=len(new_items), matches=len(matches))


def match_new_items(watchlist: Watchlist, items: Sequence[Item]) -> list[tuple[str, Match]]:
    """Run the watchlist over new items; a poison item is logged and skipped, never fatal to the poll."""
    matches: list[tuple[str, Match]] = []
    for item in items:
        try:
            found = match_item(
                watchlist,
                item.title,
                item.summary_text,
                feed_name=item.feed_name,
                feed_tags=item.feed_tags,
                link=item.link or "",
            )
        except Exception:  # a bug on one odd item must not lose the rest of the poll
            log.exception("matching item %s (%s) failed; item skipped", item.key, item.link)
            continue
        matches.extend((item.key, match) for match in found)
    return matches


def _outcome(
    url: str,
    etag: str | None,
    last_modified: str | None,
    body_hash: str,
    next_poll: datetime,
    *,
    new_items: Sequence[Item] = (),
    seen_keys: Sequence[str] = (),
    matches: Sequence[tuple[str, Match]] = (),
) -> PollOutcome:
    return PollOutcome(url, etag, last_modified, body_hash, new_items, seen_keys, matches, next_poll)


def _record_error(
    rt: Runtime, feed: FeedConfig, state: FeedState, error_class: str, message: str, now: datetime
) -> PollReport:
    interval = feed.interval or rt.config.poll.interval
    delay = schedule.backoff_delay(state.consecutive_failures + 1, interval, rt.rng)
    rt.store.record_failure(feed.url, error_class, message, now, now + delay)
    log.warning("feed %s: %s: %s (retry in %s)", feed.name, error_class, message, schedule.format_duration(delay))
    return PollReport(feed.url, feed.name, "error", error_class=error_class, error=message)


# --- digests -------------------------------------------------------------------------------------------------


def register_subscribers(rt: Runtime, now: datetime) -> None:
    """Make sure every configured subscriber has a row; a new one only receives matches from now on."""
    for subscriber in rt.config.subscribers:
        rt.store.subscriber_state(subscriber.email, now)


def subscriber_topics(rt: Runtime, subscriber: SubscriberConfig) -> list[str]:
    """The topic ids a subscriber follows that the current watchlist defines."""
    defined = [topic.id for topic in rt.watchlist.topics]
    if subscriber.topics is None:
        return defined
    return [topic for topic in subscriber.topics if topic in defined]


def digest_due(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> bool:
    """Whether the subscriber's schedule has fired since their last digest."""
    _, last = rt.store.subscriber_state(subscriber.email, now)
    due = schedule.next_digest_time(subscriber.schedule, last, ZoneInfo(subscriber.timezone))
    return due <= now


def flush_digests(
    rt: Runtime, now: datetime, *, force: bool = False, only: str | None = None
) -> list[tuple[str, int]]:
    """Build, render and queue the digests that are due (all of them with ``force``).

    Returns (subscriber, outbox id) for each message queued. Rendering a digest and marking its matches
    delivered happen in one transaction with the outbox insert.
    """
    queued: list[tuple[str, int]] = []
    health = feed_health(rt, now)
    for subscriber in rt.config.subscribers:
        if only is not None and subscriber.email != only:
            continue
        if not force and not subscriber.schedule.is_immediate and not digest_due(rt, subscriber, now):
            continue
        outbox_id = _queue_digest(rt, subscriber, now, health)
        if outbox_id is not None:
            queued.append((subscriber.email, outbox_id))
    return queued


def render_pending_digest(
    rt: Runtime, subscriber: SubscriberConfig, now: datetime, health: Sequence[FeedHealth] = ()
) -> tuple[EmailMessage, list[str]] | None:
    """The digest a subscriber would receive now, rendered, without queueing it; None if nothing is pending."""
    since, _ = rt.store.subscriber_state(subscriber.email, now)
    pending = rt.store.pending_matches(subscriber.email, subscriber_topics(rt, subscriber), since)
    if not pending:
        return None
    keys = [f"{m.item.key}/{m.match.topic_id}" for m in pending]
    digest = build_digest(
        digest_id=digest_id_for(subscriber.email, keys),
        subscriber_email=subscriber.email,
        subscriber_name=subscriber.name,
        sender=rt.config.delivery.sender,
        matched=pending,
        topic_names={topic.id: topic.name for topic in rt.watchlist.topics},
        now=now,
        timezone=subscriber.timezone,
        config_path=str(rt.config.path),
        watchlist_path=str(rt.config.watchlist),
        feed_health=health,
    )
    return render_digest(digest, rt.templates), keys


def _queue_digest(
    rt: Runtime, subscriber: SubscriberConfig, now: datetime, health: Sequence[FeedHealth]
) -> int | None:
    since, _ = rt.store.subscriber_state(subscriber.email, now)
    pending = rt.store.pending_matches(subscriber.email, subscriber_topics(rt, subscriber), since)
    if not pending:
        rt.store.mark_digest_time(subscriber.email, now)
        return None
    rendered = render_pending_digest(rt, subscriber, now, health)
    assert rendered is not None
    message, _ = rendered
    failpoint("before_outbox_commit")
    outbox_id = rt.store.enqueue_digest(
        subscriber.email, str(message["Message-ID"]), message_bytes(message), pending, now
    )
    failpoint("after_outbox_commit")
    log.info("digest for %s queued: %d matches (%s)", subscriber.email, len(pending), message["Message-ID"])
    return outbox_id


def feed_health(rt: Runtime, now: datetime) -> list[FeedHealth]:
    """Feeds a reader should hear about: gone, or failing for longer than a few hours."""
    configured = {feed.url for feed in rt.config.feeds}
    notices: list[FeedHealth] = []
    for state in rt.store.feeds():
        if state.url not in configured:
            continue
        if state.gone:
            notices.append(FeedHealth(state.name, state.url, "gone (HTTP 410): polling stopped", state.last_error_at))
        elif state.consecutive_failures and state.last_error_at:
            failing_since = state.last_success_at or state.last_error_at
            if now - failing_since >= FAILING_FEED_NOTICE_AFTER or not state.last_success_at:
                problem = f"failing: {state.last_error_class} ({state.consecutive_failures} attempts)"
                notices.append(FeedHealth(state.name, state.url, problem, failing_since))
    return notices


def message_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


# --- delivery ------------------------------------------------------------------------------------------------


async def drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    """Deliver every due outbox message; mark each sent only after the server (or mailbox) accepted it."""
    async with rt.delivery_lock:
        return await _drain_outbox(rt, now)


async def _drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    attempts: list[DeliveryAttempt] = []
    for queued in rt.store.due_outbox(now):
        message = email.message_from_bytes(queued.message, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        failpoint("before_delivery")
        try:
            await deliver(message, rt.config.delivery, base_dir=rt.config.path.parent, password=rt.smtp_password)
        except TransientDeliveryError as exc:
            if now - queued.created_at >= RETRY_LIFETIME:
                rt.store.mark_failed(queued.id, f"gave up after {RETRY_LIFETIME}: {exc}")
                log.error("delivery to %s failed for good: %s", queued.subscriber, exc)
                attempts.append(DeliveryAttempt(queued.id, queued.subscriber, "failed", str(exc)))
                continue
            delay = retry_delay(queued.attempts + 1)
            rt.store.mark_retry(queued.id, str(exc), now + delay)
            log.warning("delivery to %s deferred: %s (retry in %s)", queued.subscriber, exc, delay)
            attempts.append(DeliveryAttempt(queued.id, queued.subscriber, "retry", str(exc)))
        except PermanentDeliveryError as exc:
            rt.store.mark_failed(queued.id, str(exc))
            log.error("delivery to %s failed: %s", queued.subscriber, exc)
            attempts.append(DeliveryAttempt(queued.id, queued.subscriber, "failed", str(exc)))
        else:
            failpoint("after_delivery_before_mark_sent")
            rt.store.mark_sent(queued.id, now)
            failpoint("after_mark_sent")
            log.info("digest %s delivered to %s", queued.message_id, queued.subscriber)
            attempts.append(DeliveryAttempt(queued.id, queued.subscriber, "sent"))
    return attempts


def retry_delay(attempt: int) -> timedelta:
    """1 min, 2 min, 4 min, ... capped at 1 h."""
    factor: int = 2 ** max(0, attempt - 1)
    return min(RETRY_FIRST * factor, RETRY_CAP)
