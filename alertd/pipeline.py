"""Where the stages meet the network, the disk and the clock: load, decide, save. Nothing here decides.

Each step loads what it needs from the store, hands it to a pure decider, and saves the decision in one
transaction (lemon24/reader's ``Pipeline``):

    poll_feed:     store → fetch → parse (worker) → identify → polling.decide_poll → match → store
    flush_digests: store → due.next_mail → digest → render → store (outbox row + delivered marks)
    drain_outbox:  store → claim → deliver → outbox.decide_attempt → store      (alertd.drain)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone

from alertd import compose, due, incremental, polling, schedule, stories
from alertd.config import Config, FeedConfig, SubscriberConfig
from alertd.digest import alert_topics, subscribed_topics
from alertd.drain import DeliveryAttempt, drain_outbox, record_unrecorded, resume_delivery, state_writable
from alertd.errors import ParseError, StateWriteError
from alertd.failpoint import failpoint
from alertd.fetch import fetch_feed
from alertd.identify import entry_keys, link_candidates, make_items, recognised
from alertd.match import match_items
from alertd.models import FeedHealth, FetchResult, FetchStatus, Item
from alertd.records import MessageKind, SubscriberState
from alertd.runtime import Runtime, poll_slot
from alertd.store import Store
from alertd.strings import counted
from alertd.watchlist import Watchlist

__all__ = [
    "DeliveryAttempt",
    "Runtime",
    "drain_outbox",
    "flush_digests",
    "housekeeping",
    "next_flush_at",
    "poll_feed",
    "poll_slot",
    "record_unrecorded",
    "register_subscribers",
    "resume_delivery",
    "run_once",
    "state_writable",
]
"""The three steps (the drain lives in :mod:`alertd.drain`, the runtime in :mod:`alertd.runtime`)."""

log = logging.getLogger("alertd.pipeline")


# --- polling -------------------------------------------------------------------------------------------------


async def poll_feed(rt: Runtime, feed: FeedConfig, now: datetime) -> polling.PollReport:
    """Fetch, parse, identify and match one feed; commit what the poll decided in one transaction.

    Every outcome but 410 Gone records when the feed is polled next (see :mod:`alertd.polling`).
    """
    state = rt.store.feed_state(feed.url, feed.name)
    skipped = polling.skip(feed, state)
    if skipped is not None:
        return skipped.report
    fetched = await fetch_feed(
        rt.client,
        state.effective_url or feed.url,
        etag=state.etag,
        last_modified=state.last_modified,
        policy=rt.fetch_policy,
    )
    seen = polling.Observation(feed, state, fetched)
    if fetched.status is FetchStatus.OK:
        digest = polling.body_hash(fetched.body)
        seen = dataclasses.replace(seen, body_hash=digest)
        if polling.must_parse(state, fetched, digest):
            try:
                seen = dataclasses.replace(seen, identified=await _identify(rt, feed, fetched, now))
            except ParseError as exc:
                seen = dataclasses.replace(seen, parse_error=str(exc))
    if polling.wants_arrivals(feed, state):
        assert state.first_success_at is not None
        arrivals = rt.store.recent_arrivals(feed.url, state.first_success_at, schedule.ADAPT_SAMPLES)
        seen = dataclasses.replace(seen, arrivals=arrivals)
    intent = polling.decide_poll(seen, polling.PollPolicy.of(rt.config.poll), now, rt.rng)
    placed = _place_stories(rt, intent.alertable, now)
    matches = match_items(rt.watchlist, placed)
    if intent.write is not None:
        parsed = seen.identified is not None
        if parsed:
            failpoint("after_fetch_before_commit")
        new_items = stories.replaced(intent.write.new_items, placed)
        rt.store.record_poll(dataclasses.replace(intent.write, new_items=new_items, matches=matches), now)
        if parsed:
            failpoint("after_poll_commit")
    for level, line in intent.log:
        log.log(level, "%s", line)
    report = dataclasses.replace(
        intent.report,
        matches=len(matches),
        topic_matches=tuple(Counter(match.topic_id for _, match in matches).items()),
    )
    if report.status == "ok" and report.new_items:
        log.info(
            "feed %s: %s, %s",
            feed.name,
            counted(report.new_items, "new item"),
            counted(report.matches, "match", "matches"),
        )
    return report


def _place_stories(rt: Runtime, items: Sequence[Item], now: datetime) -> tuple[Item, ...]:
    """``items`` each in its story (see :mod:`alertd.stories`), from the stored items sharing one of their marks.

    Only items that may reach a reader take part: a seeded item, or one the flood guard held back, is stored
    as it is (a later copy of its story is news to every reader, who never saw it).
    """
    if not items:
        return ()
    signed = stories.sign(items)
    window = rt.config.digest.story_window
    candidates = rt.store.story_candidates((mark for item in signed for mark in item.marks), now - window)
    return stories.assign_stories(signed, candidates, window, now)


def reschedule_feed(
    rt: Runtime,
    old: tuple[FeedConfig, polling.PollPolicy],
    new: tuple[FeedConfig, polling.PollPolicy],
    now: datetime,
    rng: random.Random,
) -> None:
    """A reload changed what decides a feed's next poll: record when the new settings poll it
    (:func:`alertd.polling.after_reload`), rather than the time the old ones gave."""
    feed = new[0]
    state = rt.store.feed_state(feed.url, feed.name)
    arrivals: list[datetime] = []
    if polling.wants_arrivals(feed, state) and state.first_success_at is not None:
        arrivals = rt.store.recent_arrivals(feed.url, state.first_success_at, schedule.ADAPT_SAMPLES)
    due = polling.after_reload(state, old, new, arrivals, now, rng)
    if due is not None:
        rt.store.reschedule_feed(feed.url, due)
        log.info("reload: feed %s is now polled next at %s", feed.name, due.isoformat(timespec="seconds"))


async def answer_poll_requests(
    rt: Runtime, poll: Callable[[str], Awaitable[polling.PollReport | None]]
) -> None:
    """Poll now the feeds ``alertd feeds poll`` asked the daemon for (through ``poll``, the daemon's own poll
    of one feed), one request at a time, and answer each with the poll's outcome."""
    with contextlib.suppress(StateWriteError):  # nothing is asked while the state cannot be written
        for request_id, url in rt.store.open_poll_requests():
            report = await poll(url)
            outcome = report.outcome() if report is not None else f"{url}: not a configured feed"
            failed = report is not None and report.failed
            rt.store.answer_poll_request(request_id, outcome, failed, datetime.now(timezone.utc))


async def _identify(rt: Runtime, feed: FeedConfig, fetched: FetchResult, now: datetime) -> polling.Identified:
    """Parse (only the unknown items when possible, see alertd.incremental) and tell known entries from new."""
    parse = await incremental.parse(
        rt.parser, rt.layouts, feed.url, fetched.body, fetched.content_type, fetched.base_url
    )
    entries = parse.feed.entries
    keys = entry_keys(entries, feed.url)
    by_key = rt.store.known_keys(key.key for key in keys)
    candidates = link_candidates(keys, by_key)
    by_link = rt.store.known_link_keys(feed.url, candidates) if candidates else set()
    known = recognised(keys, by_key, by_link)
    if incremental.incomplete(parse, [key.key not in known for key in keys]):
        rt.layouts.forget(feed.url)
        return await _identify(rt, feed, fetched, now)
    fresh = [(entry, key) for entry, key in zip(entries, keys, strict=True) if key.key not in known]
    new_items = make_items(
        [entry for entry, _ in fresh],
        [key for _, key in fresh],
        feed.url,
        feed.name,
        frozenset(feed.tags),
        now,
    )
    return polling.Identified(
        total=len(keys),
        new_items=new_items,
        seen_keys=tuple(key.key for key in keys if key.key in known),
        seen_link_keys=tuple(sorted(by_link)),
        ttl_minutes=parse.feed.ttl_minutes,
        notices=parse.feed.notices,
    )


async def run_once(rt: Runtime, now: Callable[[], datetime]) -> int:
    """Poll every feed once (concurrently, bounded), deliver what is due; 0 if all went well, else 1."""
    register_subscribers(rt, now())
    limit = asyncio.Semaphore(rt.config.poll.concurrency)

    async def one(feed: FeedConfig) -> polling.PollReport:
        async with limit:
            return await poll_feed(rt, feed, now())

    reports = await asyncio.gather(*(one(feed) for feed in rt.config.feeds))
    flush_digests(rt, now())
    attempts = await drain_outbox(rt, now())
    failed = [r for r in reports if r.failed]
    for report in failed:
        log.error("feed failed: %s (%s): %s: %s", report.name, report.url, report.error_class, report.error)
    undelivered = [a for a in attempts if a.status != "sent"]
    for attempt in undelivered:
        log.error("delivery to %s not done (%s): %s", attempt.subscriber, attempt.status, attempt.error)
    return 1 if failed or undelivered else 0


# --- digests -------------------------------------------------------------------------------------------------


def register_subscribers(rt: Runtime, now: datetime) -> None:
    """Give every configured subscriber a row; a new one only receives matches from now on."""
    rt.store.register_subscribers((s.email for s in rt.config.subscribers), now)


def subscriber_state(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> SubscriberState:
    """The subscriber's state, registering them first if the store has not met them."""
    state = rt.store.subscriber_state(subscriber.email)
    if state is None:
        rt.store.register_subscribers([subscriber.email], now)
        state = rt.store.subscriber_state(subscriber.email)
        assert state is not None
    return due.clamped(state, now)


def next_mail(
    config: Config,
    watchlist: Watchlist | None,
    store: Store,
    subscriber: SubscriberConfig,
    state: SubscriberState,
    now: datetime,
) -> due.NextMail:
    """:func:`alertd.due.next_mail` from what the store holds for ``subscriber`` (reads only).

    Without a watchlist (``alertd status`` with a watchlist that does not load) nothing counts as pending.
    """
    topics = subscribed_topics(watchlist, subscriber) if watchlist is not None else []
    priority = alert_topics(watchlist, subscriber) if watchlist is not None else []
    return due.next_mail(
        subscriber,
        state,
        digest_pending=store.has_pending_matches(subscriber.email, topics, state.since),
        first_alert_match=store.first_pending_alert(subscriber.email, priority, state.since),
        debounce=config.digest.debounce,
        now=now,
    )


def next_flush_at(rt: Runtime, subscriber: SubscriberConfig, now: datetime) -> datetime | None:
    """When :func:`flush_digests` next has something to send this subscriber (the daemon runs it then)."""
    state = subscriber_state(rt, subscriber, now)
    return next_mail(rt.config, rt.watchlist, rt.store, subscriber, state, now).next_at


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
        try:
            queued.extend(
                (subscriber.email, outbox_id) for outbox_id in _flush_one(rt, subscriber, now, force)
            )
        except StateWriteError:
            raise
        except Exception:  # one subscriber's mail that cannot be built must not keep the others' from them
            log.exception(
                "mail for %s could not be built; the other subscribers are served", subscriber.email
            )
    return queued


def _flush_one(rt: Runtime, subscriber: SubscriberConfig, now: datetime, force: bool) -> list[int]:
    state = subscriber_state(rt, subscriber, now)
    queued: list[int] = []
    if force or next_mail(rt.config, rt.watchlist, rt.store, subscriber, state, now).digest_due(now):
        outbox_id = _queue(rt, subscriber, state, now, "digest")
        if outbox_id is not None:
            queued.append(outbox_id)
    plan = next_mail(rt.config, rt.watchlist, rt.store, subscriber, state, now)
    if plan.alerts_at is not None and (force or plan.alerts_due(now)):
        outbox_id = _queue(rt, subscriber, state, now, "alert")
        if outbox_id is not None:
            queued.append(outbox_id)
    return queued


def _queue(
    rt: Runtime, subscriber: SubscriberConfig, state: SubscriberState, now: datetime, kind: MessageKind
) -> int | None:
    """Render what is pending for ``subscriber`` as one message of ``kind`` and queue it with its marks."""
    store, email_address = rt.store, subscriber.email
    if kind == "alert":
        pending = [
            m
            for m, _ in store.pending_alerts(
                email_address, alert_topics(rt.watchlist, subscriber), state.since
            )
        ]
        if not pending:
            return None
        notices: list[FeedHealth] = []
        already_sent: set[tuple[str, str]] = set()
    else:
        pending = store.pending_matches(
            email_address, subscribed_topics(rt.watchlist, subscriber), state.since
        )
        if not pending:
            store.mark_digest_time(email_address, now)
            return None
        notices = feed_health(rt, now, events_since=state.last_digest_at)
        already_sent = store.alerted(email_address, pending)
    message = compose.build_message(
        rt.config,
        compose.names_of(rt.watchlist),
        rt.templates,
        subscriber,
        pending,
        now,
        health=notices,
        already_sent=already_sent,
        kind=kind,
        rules=compose.rules_of(rt.watchlist),
    )
    if kind == "digest":
        failpoint("before_outbox_commit")
    outbox_id = store.enqueue_digest(
        email_address, str(message["Message-ID"]), compose.message_bytes(message), pending, now, kind=kind
    )
    if kind == "digest":
        failpoint("after_outbox_commit")
    matches = counted(len(pending), "match", "matches")
    log.info("%s for %s queued: %s (%s)", kind, email_address, matches, message["Message-ID"])
    return outbox_id


def feed_health(rt: Runtime, now: datetime, *, events_since: datetime | None = None) -> list[FeedHealth]:
    """The feeds a reader should hear about (:func:`alertd.health.reader_notices`), and with ``events_since``
    the moves and floods recorded since then (the reader's last digest)."""
    return compose.feed_health(rt.config, rt.store, now, events_since=events_since)


def housekeeping(rt: Runtime, now: datetime) -> None:
    """Daily: forget history older than the retention (never a failing feed's), keep the file small."""
    retention = rt.config.retention
    items = rt.store.prune(now, retention)
    history = rt.store.prune_history(now, retention)
    log.info(
        "housekeeping: forgot %d items, %d sent messages, %d feed events older than %s",
        items,
        history["outbox"],
        history["feed_events"],
        schedule.format_duration(retention),
    )
