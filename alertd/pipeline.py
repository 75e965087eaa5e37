"""Where the stages meet the network, the disk and the clock: poll a feed, flush digests, drain the outbox.

Each function loads what it needs from the store, runs the pure stages, and saves the outcome in one
transaction. The pure stages decide; these functions only carry data between them and the outside world.

    poll_feed:     store → fetch → parse (worker) → identify → match → store
    flush_digests: store → digest → render → store (outbox row + delivered marks, one transaction)
    drain_outbox:  store → deliver → store (sent / retry / failed)
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import hashlib
import logging
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import jinja2

from alertd import incremental, schedule
from alertd.config import Config, FeedConfig, SubscriberConfig
from alertd.deliver import DeliveryReport, SmtpSetupError, deliver
from alertd.digest import build_digest, digest_id_for
from alertd.errors import ParseError, PermanentDeliveryError, TransientDeliveryError
from alertd.failpoint import failpoint
from alertd.fetch import FetchPolicy, fetch_feed
from alertd.identify import EntryKey, entry_keys, is_flood, item_link_key, make_items, novel_items
from alertd.match import match_item
from alertd.metrics import Metrics
from alertd.models import FeedHealth, FetchResult, FetchStatus, Hint, Item, Match, MatchedItem, ParsedFeed
from alertd.parse import ParserPool
from alertd.quiet import in_quiet_hours, release_time
from alertd.render import render_digest
from alertd.store import DeliveryPause, FeedState, PollOutcome, Store
from alertd.watchlist import Watchlist

log = logging.getLogger("alertd.pipeline")

RETRY_FIRST = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
RETRY_LIFETIME = timedelta(hours=24)


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
    metrics: Metrics = field(default_factory=Metrics)
    # Bounds the daemon's concurrent polls to [poll] concurrency; created on first use (see poll_slot).
    poll_slots: asyncio.Semaphore | None = None
    layouts: incremental.Layouts = field(default_factory=incremental.Layouts)


def poll_slot(rt: Runtime) -> asyncio.Semaphore:
    """The semaphore every scheduled poll holds while it runs: at most ``[poll] concurrency`` at once."""
    if rt.poll_slots is None:
        rt.poll_slots = asyncio.Semaphore(rt.config.poll.concurrency)
    return rt.poll_slots


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
    notice: str | None = None
    """Something the poll held back and reported (the flood guard)."""
    topic_matches: tuple[tuple[str, int], ...] = ()
    """How many matches each topic got, for metrics."""

    @property
    def failed(self) -> bool:
        return self.status in ("error", "gone")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """The outcome of one outbox message's delivery attempt."""

    outbox_id: int
    subscriber: str
    status: str  # sent | retry | failed | paused (SMTP delivery paused on a configuration error)
    error: str | None = None
    """Why it was not sent; for a sent message, the recipients the server refused (if any)."""


# --- polling -------------------------------------------------------------------------------------------------


async def poll_feed(rt: Runtime, feed: FeedConfig, now: datetime) -> PollReport:
    """Fetch, parse, identify and match one feed; commit its new items and matches in one transaction.

    Every outcome but 410 Gone records when the feed is polled next (``FeedState.next_poll_at``): after its
    interval (adapted to its posting rate, stretched by the server's hints) on success, after an exponential
    backoff on failure. See docs/polling.md.
    """
    state = rt.store.feed_state(feed.url, feed.name)
    if state.gone:
        return PollReport(
            feed.url, feed.name, "skipped", error="feed is gone (HTTP 410); remove it from the config"
        )
    result = await fetch_feed(
        rt.client,
        state.effective_url or feed.url,
        etag=state.etag,
        last_modified=state.last_modified,
        policy=rt.fetch_policy,
    )
    if result.status is FetchStatus.GONE:
        rt.store.record_failure(feed.url, "gone", "HTTP 410 Gone: polling stopped", now, None)
        log.error("feed %s (%s) is gone (HTTP 410): polling stopped", feed.name, result.url)
        return PollReport(feed.url, feed.name, "gone", error_class="gone", error="HTTP 410 Gone")
    if result.status is FetchStatus.ERROR:
        error_class = result.error_class or "error"
        return _record_error(rt, feed, state, error_class, result.error or "", now, hint=result.retry_after)
    lifetime = schedule.cache_lifetime(result.fresh_for, now)
    if result.status is FetchStatus.NOT_MODIFIED:
        interval = _interval(rt, feed, state, now)
        rt.store.record_not_modified(
            feed.url, now, _next_poll(rt, now, interval, state.ttl_minutes, lifetime)
        )
        return PollReport(feed.url, feed.name, "not_modified")

    body_hash = hashlib.sha256(result.body).hexdigest()
    candidate, count, moved_to = redirect_progress(state, result.permanent_redirect)
    events = [_moved_event(feed, state, moved_to)] if moved_to else []
    if body_hash == state.body_hash:  # the same bytes parsed before: nothing can be new
        interval = _interval(rt, feed, state, now)
        next_poll = _next_poll(rt, now, interval, state.ttl_minutes, lifetime)
        outcome = _outcome(feed.url, result.etag, result.last_modified, body_hash, next_poll)
        rt.store.record_poll(
            dataclasses.replace(
                outcome,
                ttl_minutes=state.ttl_minutes,
                redirect_candidate=candidate,
                redirect_count=count,
                moved_to=moved_to,
                events=events,
            ),
            now,
        )
        return PollReport(feed.url, feed.name, "unchanged")
    try:
        parsed, keys, known, seen_link_keys = await _parse_and_identify(rt, feed, result)
    except ParseError as exc:
        return _record_error(rt, feed, state, "parse_error", str(exc), now)

    fresh = [(entry, key) for entry, key in zip(parsed.entries, keys, strict=True) if key.key not in known]
    new_items = make_items(
        [entry for entry, _ in fresh],
        [key for _, key in fresh],
        feed.url,
        feed.name,
        frozenset(feed.tags),
        now,
    )
    seeding = not state.seeded and rt.config.poll.first_poll == "seed"
    interval = _interval(rt, feed, state, now, arrived=0 if seeding else len(new_items))
    alertable: Sequence[Item] = new_items
    notice = None
    if state.seeded and is_flood(len(new_items), len(keys)):
        alertable, notice = _flood_guard(feed, state, new_items, len(keys), now, interval)
        if not rt.store.feed_events(now - FLOOD_NOTICE_EVERY, kind="flood", feed_url=feed.url):
            events.append(("flood", notice))
    matches = [] if seeding else match_new_items(rt.watchlist, alertable)
    outcome = PollOutcome(
        url=feed.url,
        etag=result.etag,
        last_modified=result.last_modified,
        body_hash=body_hash,
        new_items=new_items,
        seen_keys=[key.key for key in keys if key.key in known],
        matches=matches,
        next_poll_at=_next_poll(rt, now, interval, parsed.ttl_minutes, lifetime),
        seen_link_keys=seen_link_keys,
        ttl_minutes=parsed.ttl_minutes,
        redirect_candidate=candidate,
        redirect_count=count,
        moved_to=moved_to,
        events=events,
    )
    failpoint("after_fetch_before_commit")
    rt.store.record_poll(outcome, now)
    failpoint("after_poll_commit")
    status = "seeded" if seeding else "ok"
    if seeding:
        log.info("feed %s: first poll, %d items marked seen without alerting", feed.name, len(new_items))
    elif new_items:
        log.info("feed %s: %d new items, %d matches", feed.name, len(new_items), len(matches))
    return PollReport(
        feed.url,
        feed.name,
        status,
        new_items=len(new_items),
        matches=len(matches),
        notice=notice,
        topic_matches=tuple(Counter(match.topic_id for _, match in matches).items()),
    )


MOVE_AFTER_POLLS = 3
"""Consecutive polls through the same permanent redirect, each parsed, before the feed is re-linked (F10)."""
FLOOD_NOTICE_EVERY = timedelta(hours=24)
"""At most one stored flood event per feed in this window (each flood is still logged)."""


def redirect_progress(state: FeedState, permanent_target: str | None) -> tuple[str | None, int, str | None]:
    """After a poll that parsed: (candidate, consecutive count, target to move to now or None).

    Only a chain of 301 / 308 counts (``FetchResult.permanent_redirect``); any 302 / 307 on the way, or no
    redirect, starts over, and so does a failed poll (``Store.record_failure``). A 304 changes nothing.
    """
    if permanent_target is None:
        return None, 0, None
    count = state.redirect_count + 1 if permanent_target == state.redirect_candidate else 1
    if count >= MOVE_AFTER_POLLS:
        return None, 0, permanent_target
    return permanent_target, count, None


def _moved_event(feed: FeedConfig, state: FeedState, target: str) -> tuple[str, str]:
    source = state.effective_url or feed.url
    message = (
        f"moved permanently from {source} to {target} ({MOVE_AFTER_POLLS} consecutive polls); "
        f"alertd fetches the new address, update the config at your convenience"
    )
    log.warning("feed %s: %s", feed.name, message)
    return ("moved", message)


async def _parse_and_identify(
    rt: Runtime, feed: FeedConfig, result: FetchResult
) -> tuple[ParsedFeed, tuple[EntryKey, ...], set[str], list[str]]:
    """Parse (only the unknown items when possible, see alertd.incremental) and tell known entries from new."""
    parsed = await incremental.parse(
        rt.parser, rt.layouts, feed.url, result.body, result.content_type, result.base_url
    )
    keys = entry_keys(parsed.feed.entries, feed.url)
    known, seen_link_keys = _known_items(rt.store, feed.url, keys)
    if any(index in parsed.reused and key.key not in known for index, key in enumerate(keys)):
        # An entry remembered without its summary is new to the store (the poll that saw it never committed,
        # or it was pruned): parse the whole document to have all of it.
        rt.layouts.forget(feed.url)
        return await _parse_and_identify(rt, feed, result)
    return parsed.feed, keys, known, seen_link_keys


def _known_items(store: Store, feed_url: str, keys: Sequence[EntryKey]) -> tuple[set[str], list[str]]:
    """Keys of the items already seen, by key or by link key (RELIABILITY I2); and the link keys that
    recognised an item whose key changed.

    A link shared by several items of this fetch (a feed linking every item to its home page) identifies
    nothing and is not used.
    """
    by_key = store.known_keys(key.key for key in keys)
    links = {key.key: item_link_key(key) for key in keys}
    shared = Counter(link for link in links.values() if link is not None)
    candidates = {
        link for key, link in links.items() if key not in by_key and link is not None and shared[link] == 1
    }
    by_link = store.known_link_keys(feed_url, candidates) if candidates else set()
    known = by_key | {key for key, link in links.items() if link in by_link}
    return known, sorted(by_link)


def _flood_guard(
    feed: FeedConfig,
    state: FeedState,
    new_items: Sequence[Item],
    total: int,
    now: datetime,
    interval: timedelta,
) -> tuple[list[Item], str]:
    """Hold back a flood: only items published within the last two poll windows still alert."""
    window = max(now - (state.last_success_at or now), interval)
    cutoff = now - 2 * window
    novel = novel_items(new_items, cutoff)
    message = (
        f"{len(new_items)} new items in one poll (the feed has {total}): the feed changed its item ids or "
        f"published a backlog; only the {len(novel)} published after {cutoff:%Y-%m-%d %H:%M} UTC may alert, "
        f"the others were marked seen"
    )
    log.warning("feed %s: flood guard: %s", feed.name, message)
    return novel, message


def poll_bounds(config: Config) -> schedule.PollBounds:
    return schedule.PollBounds(config.poll.min_interval, config.poll.max_interval)


def _interval(
    rt: Runtime, feed: FeedConfig, state: FeedState, now: datetime, *, arrived: int = 0
) -> timedelta:
    """The feed's normal interval: its own, or the observed posting rate (``arrived``: new in this poll)."""
    arrivals: list[datetime] = []
    if feed.interval is None and state.first_success_at is not None:
        arrivals = rt.store.recent_arrivals(feed.url, state.first_success_at, schedule.ADAPT_SAMPLES)
    arrivals += [now] * arrived
    return schedule.feed_interval(
        feed.interval or rt.config.poll.interval,
        poll_bounds(rt.config),
        fixed=feed.interval is not None,
        arrivals=arrivals,
        now=now,
    )


def _next_poll(
    rt: Runtime, now: datetime, interval: timedelta, ttl_minutes: int | None, lifetime: timedelta | None
) -> datetime:
    ttl = timedelta(minutes=ttl_minutes) if ttl_minutes else None
    return schedule.next_poll_time(
        now, interval, poll_bounds(rt.config), rt.config.poll.jitter, rt.rng, ttl=ttl, lifetime=lifetime
    )


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
    rt: Runtime,
    feed: FeedConfig,
    state: FeedState,
    error_class: str,
    message: str,
    now: datetime,
    *,
    hint: Hint | None = None,
) -> PollReport:
    """Back off exponentially (never give up: RELIABILITY F9), honouring Retry-After on 429 / 503 (F8)."""
    interval = _interval(rt, feed, state, now)
    delay = schedule.retry_after(hint, now) if error_class == "rate_limited" else None
    failures = state.consecutive_failures + 1
    next_poll = schedule.next_retry_time(
        now, failures, interval, poll_bounds(rt.config), rt.rng, retry_after=delay
    )
    rt.store.record_failure(feed.url, error_class, message, now, next_poll)
    log.warning(
        "feed %s: %s: %s (failure %d, retry in %s)",
        feed.name,
        error_class,
        message,
        failures,
        schedule.format_duration(timedelta(seconds=round((next_poll - now).total_seconds()))),
    )
    return PollReport(feed.url, feed.name, "error", error_class=error_class, error=message)


# --- digests -------------------------------------------------------------------------------------------------


def register_subscribers(rt: Runtime, now: datetime) -> None:
    """Make sure every configured subscriber has a row; a new one only receives matches from now on."""
    for subscriber in rt.config.subscribers:
        rt.store.subscriber_state(subscriber.email, now)


def subscriber_topics(rt: Runtime, subscriber: SubscriberConfig) -> list[str]:
    """The topic ids a subscriber follows that the current watchlist defines."""
    return _topics_of(rt.watchlist, subscriber)


def _topics_of(watchlist: Watchlist, subscriber: SubscriberConfig) -> list[str]:
    defined = [topic.id for topic in watchlist.topics]
    if subscriber.topics is None:
        return defined
    return [topic for topic in subscriber.topics if topic in defined]


def priority_topics(rt: Runtime, subscriber: SubscriberConfig) -> list[str]:
    """The subscriber's topics with ``priority = "immediate"``: their matches are alerted right away."""
    priority = {topic.id for topic in rt.watchlist.topics if topic.priority == "immediate"}
    return [topic for topic in subscriber_topics(rt, subscriber) if topic in priority]


def digest_due(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> bool:
    """Whether the subscriber's schedule has fired since their last digest, and ``now`` is outside their
    quiet hours (a digest due during quiet hours waits for the end of the window, never is dropped)."""
    zone = ZoneInfo(subscriber.timezone)
    if in_quiet_hours(subscriber.quiet_hours, now, zone):
        return False
    if subscriber.schedule.is_immediate:
        return True
    _, last = rt.store.subscriber_state(subscriber.email, now)
    return schedule.next_digest_time(subscriber.schedule, last, zone) <= now


def alerts_due_at(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> datetime | None:
    """When the subscriber's pending priority alerts go out, or None if none is pending.

    ``[digest] debounce`` after the first pending match (so matches close together share one email), and
    not during quiet hours. Immediate subscribers get no separate alerts: their digest already goes at once.
    A result at or before ``now`` means: due now.
    """
    if subscriber.schedule.is_immediate:
        return None
    topics = priority_topics(rt, subscriber)
    if not topics:
        return None
    since, _ = rt.store.subscriber_state(subscriber.email, now)
    pending = rt.store.pending_alerts(subscriber.email, topics, since)
    if not pending:
        return None
    first = min(matched_at for _, matched_at in pending)
    return release_time(
        subscriber.quiet_hours, max(first + rt.config.digest.debounce, now), ZoneInfo(subscriber.timezone)
    )


def next_flush_at(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> datetime | None:
    """When :func:`flush_digests` next has something to send this subscriber (the daemon runs it then).

    The scheduled digest (held to the end of quiet hours), pending priority alerts, and for an immediate
    subscriber, matches held by quiet hours. None: nothing until new matches arrive.
    """
    zone = ZoneInfo(subscriber.timezone)
    candidates: list[datetime] = []
    if subscriber.schedule.is_immediate:
        since, _ = rt.store.subscriber_state(subscriber.email, now)
        if rt.store.pending_matches(subscriber.email, subscriber_topics(rt, subscriber), since):
            candidates.append(release_time(subscriber.quiet_hours, now, zone))
    else:
        _, last = rt.store.subscriber_state(subscriber.email, now)
        due = schedule.next_digest_time(subscriber.schedule, last, zone)
        candidates.append(release_time(subscriber.quiet_hours, max(due, now), zone))
    alerts = alerts_due_at(rt, subscriber, now)
    if alerts is not None:
        candidates.append(alerts)
    return min(candidates) if candidates else None


def flush_digests(
    rt: Runtime, now: datetime, *, force: bool = False, only: str | None = None
) -> list[tuple[str, int]]:
    """Build, render and queue the digests and priority alerts that are due (all pending ones with ``force``).

    Returns (subscriber, outbox id) for each message queued. Rendering a message and marking its matches
    delivered happen in one transaction with the outbox insert. A digest goes before the alerts: a match
    it carries is no longer an alert to send.
    """
    queued: list[tuple[str, int]] = []
    for subscriber in rt.config.subscribers:
        if only is not None and subscriber.email != only:
            continue
        if force or digest_due(rt, subscriber, now):
            outbox_id = _queue_digest(rt, subscriber, now)
            if outbox_id is not None:
                queued.append((subscriber.email, outbox_id))
        alerts_at = alerts_due_at(rt, subscriber, now)
        if alerts_at is not None and (force or alerts_at <= now):
            outbox_id = _queue_alert(rt, subscriber, now)
            if outbox_id is not None:
                queued.append((subscriber.email, outbox_id))
    return queued


def render_pending_digest(
    rt: Runtime, subscriber: SubscriberConfig, now: datetime, health: Sequence[FeedHealth] = ()
) -> tuple[EmailMessage, list[MatchedItem]] | None:
    """The digest a subscriber would receive now, rendered, and the matches it carries, without queueing it;
    None if nothing is pending."""
    since, _ = rt.store.subscriber_state(subscriber.email, now)
    pending = rt.store.pending_matches(subscriber.email, subscriber_topics(rt, subscriber), since)
    if not pending:
        return None
    message = build_message(
        rt.config,
        rt.watchlist,
        rt.templates,
        subscriber,
        pending,
        now,
        health=health,
        already_sent=rt.store.alerted(subscriber.email, pending),
    )
    return message, pending


def build_message(
    config: Config,
    watchlist: Watchlist,
    templates: jinja2.Environment,
    subscriber: SubscriberConfig,
    matched: Sequence[MatchedItem],
    now: datetime,
    *,
    health: Sequence[FeedHealth] = (),
    already_sent: Collection[tuple[str, str]] = (),
    kind: str = "digest",
) -> EmailMessage:
    """``matched`` as the email this subscriber gets (a digest, or a short ``kind="alert"``): pure."""
    prefix = "alert:" if kind == "alert" else ""  # an alert and the digest repeating it differ in Message-ID
    digest = build_digest(
        digest_id=digest_id_for(subscriber.email, [prefix + key for key in _match_keys(matched)]),
        subscriber_email=subscriber.email,
        subscriber_name=subscriber.name,
        sender=config.delivery.sender,
        matched=matched,
        topic_names={topic.id: topic.name for topic in watchlist.topics},
        now=now,
        timezone=subscriber.timezone,
        config_path=str(config.path),
        watchlist_path=str(config.watchlist),
        max_items_per_topic=subscriber.max_items_per_topic,
        feed_health=health,
        already_sent=already_sent,
        language=subscriber.language,
        kind=kind,
    )
    return render_digest(digest, templates)


def _match_keys(matched: Sequence[MatchedItem]) -> list[str]:
    return [f"{m.item.key}/{m.match.topic_id}" for m in matched]


def _queue_digest(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> int | None:
    _, last = rt.store.subscriber_state(subscriber.email, now)
    rendered = render_pending_digest(rt, subscriber, now, feed_health(rt, now, events_since=last))
    if rendered is None:
        rt.store.mark_digest_time(subscriber.email, now)
        return None
    message, pending = rendered
    failpoint("before_outbox_commit")
    outbox_id = rt.store.enqueue_digest(
        subscriber.email, str(message["Message-ID"]), message_bytes(message), pending, now
    )
    failpoint("after_outbox_commit")
    log.info("digest for %s queued: %d matches (%s)", subscriber.email, len(pending), message["Message-ID"])
    return outbox_id


def _queue_alert(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> int | None:
    since, _ = rt.store.subscriber_state(subscriber.email, now)
    pending = [
        m for m, _ in rt.store.pending_alerts(subscriber.email, priority_topics(rt, subscriber), since)
    ]
    if not pending:
        return None
    message = build_message(rt.config, rt.watchlist, rt.templates, subscriber, pending, now, kind="alert")
    outbox_id = rt.store.enqueue_digest(
        subscriber.email, str(message["Message-ID"]), message_bytes(message), pending, now, kind="alert"
    )
    log.info("alert for %s queued: %d matches (%s)", subscriber.email, len(pending), message["Message-ID"])
    return outbox_id


def preview_message(
    config: Config,
    watchlist: Watchlist,
    templates: jinja2.Environment,
    store: Store,
    subscriber: SubscriberConfig,
    now: datetime,
    *,
    window: timedelta | None = None,
) -> EmailMessage | None:
    """The digest ``subscriber`` would get now (``alertd preview``), or None if there is nothing to show.

    From the pending matches, or with ``window`` from every match stored in that window, delivered or
    not. Only reads the store: safe on a database opened read-only, beside a running daemon.
    """
    known = store.subscriber_since(subscriber.email)
    topics = _topics_of(watchlist, subscriber)
    if window is not None:
        matched = store.matches_since(topics, now - window)
    elif known is not None:
        matched = store.pending_matches(subscriber.email, topics, known[0])
    else:
        matched = []  # a subscriber the daemon has not met yet starts from the next match
    if not matched:
        return None
    last = known[1] if known is not None else now
    return build_message(
        config,
        watchlist,
        templates,
        subscriber,
        matched,
        now,
        health=feed_health_notices(config, store, now, events_since=last),
        already_sent=store.alerted(subscriber.email, matched),
    )


def feed_health(rt: Runtime, now: datetime, *, events_since: datetime | None = None) -> list[FeedHealth]:
    """Feeds a reader should hear about (see :func:`feed_health_notices`)."""
    return feed_health_notices(rt.config, rt.store, now, events_since=events_since)


def feed_health_notices(
    config: Config, store: Store, now: datetime, *, events_since: datetime | None = None
) -> list[FeedHealth]:
    """Configured feeds that are gone, or failing for longer than ``[digest] feed_health_after``; and with
    ``events_since``, the moves and floods recorded since then (the reader's last digest)."""
    configured = {feed.url for feed in config.feeds}
    threshold = config.digest.feed_health_after
    notices: list[FeedHealth] = []
    states = {state.url: state for state in store.feeds()}
    for state in states.values():
        if state.url not in configured:
            continue
        if state.gone:
            problem = "gone (HTTP 410): polling stopped"
            notices.append(FeedHealth(state.name, state.url, problem, state.last_error_at, kind="gone"))
        elif state.consecutive_failures and state.last_error_at:
            failing_since = state.last_success_at or state.last_error_at
            if now - failing_since >= threshold or not state.last_success_at:
                problem = f"failing: {state.last_error_class} ({state.consecutive_failures} attempts)"
                notices.append(
                    FeedHealth(
                        state.name,
                        state.url,
                        problem,
                        failing_since,
                        kind="failing",
                        error_class=state.last_error_class,
                        attempts=state.consecutive_failures,
                    )
                )
    if events_since is not None:
        for event in store.feed_events(events_since):
            if event.kind in ("moved", "flood") and event.feed_url in configured:
                moved = event.kind == "moved" and event.feed_url in states
                notices.append(
                    FeedHealth(
                        event.feed_name,
                        event.feed_url,
                        event.message,
                        event.at,
                        kind=event.kind,
                        target=states[event.feed_url].effective_url if moved else None,
                    )
                )
    return notices


def message_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


# --- delivery ------------------------------------------------------------------------------------------------


async def drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    """Deliver every due outbox message; mark each sent only after the server (or mailbox) accepted it."""
    async with rt.delivery_lock:
        attempts = await _drain_outbox(rt, now)
    for attempt in attempts:
        rt.metrics.emails.labels(attempt.status).inc()
    return attempts


def delivery_fingerprint(config: Config) -> str:
    """A digest of the delivery settings: a pause taken under some settings ends when they change."""
    return hashlib.sha256(repr(config.delivery).encode("utf-8")).hexdigest()[:16]


def delivery_paused(rt: Runtime) -> DeliveryPause | None:
    """The SMTP delivery pause in force, if any; one taken under other delivery settings is lifted here."""
    if rt.config.delivery.method != "smtp":
        return None
    pause = rt.store.delivery_pause()
    if pause is not None and pause.config_fingerprint != delivery_fingerprint(rt.config):
        rt.store.resume_delivery()
        log.info("delivery settings changed since SMTP delivery was paused: resuming")
        return None
    return pause


def resume_delivery(rt: Runtime, why: str) -> None:
    """Lift a delivery pause (the config was reloaded, or the daemon started): the next drain tries again."""
    if rt.store.resume_delivery():
        log.info("SMTP delivery resumed (%s)", why)


async def _drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    due = rt.store.due_outbox(now)
    pause = delivery_paused(rt) if due else None
    if pause is not None:
        log.debug("SMTP delivery paused since %s: %d messages wait", pause.since, len(due))
        return [DeliveryAttempt(q.id, q.subscriber, "paused", pause.reason) for q in due]
    attempts: list[DeliveryAttempt] = []
    for index, queued in enumerate(due):
        message = email.message_from_bytes(queued.message, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        failpoint("before_delivery")
        try:
            with rt.metrics.delivery_seconds.time():
                report = await deliver(
                    message, rt.config.delivery, base_dir=rt.config.path.parent, password=rt.smtp_password
                )
        except SmtpSetupError as exc:  # 535, no STARTTLS, no password: no message can go until it is fixed
            rt.store.mark_attempted(queued.id, str(exc))
            rt.store.pause_delivery(str(exc), delivery_fingerprint(rt.config), now)
            log.error(
                "SMTP delivery paused: configuration error: %s. %d messages stay queued; fix [delivery.smtp] "
                "or the password, then reload the config (systemctl reload alertd) or run `alertd outbox retry`",
                exc,
                len(due) - index,
            )
            attempts.extend(DeliveryAttempt(q.id, q.subscriber, "paused", str(exc)) for q in due[index:])
            break
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
            refused = refused_note(report)
            failpoint("after_delivery_before_mark_sent")
            rt.store.mark_sent(queued.id, now, refused)
            failpoint("after_mark_sent")
            if refused:
                log.warning("digest %s delivered to some recipients only: %s", queued.message_id, refused)
            log.info("digest %s delivered to %s", queued.message_id, queued.subscriber)
            attempts.append(DeliveryAttempt(queued.id, queued.subscriber, "sent", refused))
    return attempts


def refused_note(report: DeliveryReport) -> str | None:
    """The recipients a server refused while accepting others, as one line for the outbox and the log."""
    if not report.refused:
        return None
    refused = "; ".join(
        f"{addr}: {code} {text}".strip() for addr, (code, text) in sorted(report.refused.items())
    )
    return f"refused by the server: {refused}"


def retry_delay(attempt: int) -> timedelta:
    """1 min, 2 min, 4 min, ... capped at 1 h."""
    factor: int = 2 ** max(0, attempt - 1)
    return min(RETRY_FIRST * factor, RETRY_CAP)
