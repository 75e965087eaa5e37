"""What one poll of one feed decides (pure: reader's ``Decider``). The pipeline loads, this decides, the store saves.

    state, fetch result, identified entries, policy, now, rng  --decide_poll-->  PollIntent
        PollIntent.write       the feed's whole new state, its new items, sightings, events (to the store)
        PollIntent.alertable   the new items that may alert (to the matcher), none when seeding or flooded
        PollIntent.report      what the poll amounted to (logs, metrics, ``run --once``)

Everything a poll decides is here: the next poll (interval adapted to the posting rate, stretched by ``<ttl>``
and the response's freshness, backoff on failure honouring Retry-After), redirect progress and the move after
``MOVE_AFTER_POLLS`` consistent permanent redirects, 410 Gone, the silent seeding of a new feed, and the flood
cut with its notice (docs/polling.md). Nothing here does I/O or reads the clock: ``now`` and ``rng`` come in.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from alertd import schedule
from alertd.config import FeedConfig, PollConfig
from alertd.identify import is_flood, novel_items
from alertd.models import ErrorClass, FetchResult, FetchStatus, Item
from alertd.records import FeedEventKind, FeedState, PollWrite
from alertd.strings import counted

PollStatus = Literal["ok", "not_modified", "unchanged", "seeded", "gone", "error", "skipped"]
"""ok: parsed, new items (if any) recorded; not_modified: 304; unchanged: the same bytes as last time; seeded:
the first poll of a feed, items marked seen without alerting; gone: 410; error: fetch or parse failed;
skipped: not polled (the feed is gone)."""

MOVE_AFTER_POLLS = 3
"""Consecutive polls through the same permanent redirect, each parsed, before the feed is re-linked (F10)."""
FLOOD_NOTICE_EVERY = timedelta(hours=24)
"""At most one stored flood event per feed in this window (each flood is still logged)."""

Log = tuple[int, str]
"""A line for the log: (logging level, message). The pipeline writes it."""


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The ``[poll]`` settings a poll decides with."""

    interval: timedelta
    bounds: schedule.PollBounds
    jitter: float
    seed_first_poll: bool
    """``first_poll = "seed"``: a new feed's first poll marks its items seen without alerting (I3)."""

    @classmethod
    def of(cls, config: PollConfig) -> PollPolicy:
        return cls(
            interval=config.interval,
            bounds=schedule.PollBounds(config.min_interval, config.max_interval),
            jitter=config.jitter,
            seed_first_poll=config.first_poll == "seed",
        )


@dataclass(frozen=True, slots=True)
class Identified:
    """A parsed document's entries, told apart against the store: what a poll needs of its parse."""

    total: int
    """Entries in the document."""
    new_items: tuple[Item, ...]
    """Entries the store has not seen, as items."""
    seen_keys: tuple[str, ...]
    """Keys of the entries the store knows."""
    seen_link_keys: tuple[str, ...] = ()
    """Link keys that recognised an entry whose key changed (its GUID rotated)."""
    ttl_minutes: int | None = None
    notices: tuple[str, ...] = ()
    """What the parser cleaned or dropped (``ParsedFeed.notices``)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one poll saw, loaded by the pipeline."""

    feed: FeedConfig
    state: FeedState
    fetched: FetchResult
    body_hash: str | None = None
    """:func:`body_hash` of the fetched body (OK responses)."""
    identified: Identified | None = None
    """The parse, when the body was new and parsed."""
    parse_error: str | None = None
    """Why the body could not be parsed, when it was new and did not parse."""
    arrivals: Sequence[datetime] = ()
    """First-seen times of the feed's recent new items (see :func:`wants_arrivals`)."""


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll of one feed did, for logs, metrics and the exit status of ``run --once``."""

    url: str
    name: str
    status: PollStatus
    new_items: int = 0
    matches: int = 0
    error_class: ErrorClass | None = None
    error: str | None = None
    notice: str | None = None
    """Something the poll held back and reported (the flood guard)."""
    topic_matches: tuple[tuple[str, int], ...] = ()
    """How many matches each topic got, for metrics."""

    @property
    def failed(self) -> bool:
        return self.status in ("error", "gone")

    def outcome(self) -> str:
        """The poll in one line, for the person who asked for it (``alertd feeds poll``)."""
        if self.status in ("error", "gone", "skipped"):
            return f"{self.name}: {self.status}: {self.error_class + ': ' if self.error_class else ''}{self.error}"
        found = f"{counted(self.new_items, 'new item')}, {counted(self.matches, 'match', 'matches')}"
        return f"{self.name}: {self.status}, {found}" + (f" ({self.notice})" if self.notice else "")


@dataclass(frozen=True, slots=True)
class PollIntent:
    """What a poll decided."""

    report: PollReport
    write: PollWrite | None = None
    """What to store; None for a poll that was not made (a gone feed)."""
    alertable: tuple[Item, ...] = ()
    """The new items to match: every new item, only the recent ones of a flood, none when seeding."""
    log: tuple[Log, ...] = ()


def skip(feed: FeedConfig, state: FeedState) -> PollIntent | None:
    """A feed that must not be fetched (410 Gone earlier, or paused), or None: fetch it."""
    if feed.paused:
        return PollIntent(
            PollReport(feed.url, feed.name, "skipped", error="feed is paused (alertd feeds resume)")
        )
    if not state.gone:
        return None
    report = PollReport(
        feed.url, feed.name, "skipped", error="feed is gone (HTTP 410); remove it from the config"
    )
    return PollIntent(report)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def must_parse(state: FeedState, fetched: FetchResult, digest: str) -> bool:
    """Whether the fetched body is worth parsing: a 200 whose bytes differ from the last ones parsed."""
    return fetched.status is FetchStatus.OK and digest != state.body_hash


def wants_arrivals(feed: FeedConfig, state: FeedState) -> bool:
    """Whether the interval adapts to the posting rate, which needs the feed's recent arrival times."""
    return feed.interval is None and state.first_success_at is not None


FIRST_POLL_SPREAD = timedelta(seconds=10)
"""Feeds never polled, or overdue after a stop, start within this time of the daemon, spread out."""


def job_time(
    state: FeedState, now: datetime, rng: random.Random, *, after_poll: bool, policy: PollPolicy
) -> datetime | None:
    """When the daemon runs the feed's next poll: at the ``next_poll_at`` its last poll decided.

    None for a gone feed (410): it is not polled again. A feed never polled, or overdue after a stop, starts
    within :data:`FIRST_POLL_SPREAD`, spread so feeds do not fire together; after a poll whose outcome could
    not be recorded (a full disk), the feed waits ``[poll] min_interval`` rather than looping. A stored time
    further ahead than any poll is ever put off (:func:`horizon`) comes from a clock that was ahead and was
    corrected: the feed is polled soon, not weeks later.
    """
    if state.gone:
        return None
    due = state.next_poll_at
    if due is not None and now < due <= now + horizon(policy):
        return due
    if after_poll:
        return now + policy.bounds.minimum
    return now + timedelta(seconds=rng.uniform(0, FIRST_POLL_SPREAD.total_seconds()))


def after_reload(
    state: FeedState,
    old: tuple[FeedConfig, PollPolicy],
    new: tuple[FeedConfig, PollPolicy],
    arrivals: Sequence[datetime],
    now: datetime,
    rng: random.Random,
) -> datetime | None:
    """When a feed is polled next once a reload changed its interval or ``[poll]`` bounds; None: keep the
    time its last poll decided (nothing that decided it changed, or the feed is failing, new or gone).

    The time is what its last poll would have decided under the new settings — the normal interval, from the
    feed's own ``interval``, ``[poll] interval`` or its posting rate (``arrivals``), within the new bounds and
    never below its ``<ttl>``, jittered — counted from that poll, and not before ``now``: lowering the interval
    polls sooner at once instead of after the poll already scheduled.
    """
    last = max((t for t in (state.last_success_at, state.last_error_at) if t is not None), default=None)
    if last is None or state.gone or state.consecutive_failures:
        return None

    def normal(feed: FeedConfig, policy: PollPolicy) -> timedelta:
        configured = feed.interval or policy.interval
        fixed = feed.interval is not None
        return schedule.feed_interval(configured, policy.bounds, fixed=fixed, arrivals=arrivals, now=now)

    (old_feed, old_policy), (new_feed, new_policy) = old, new
    if (
        normal(old_feed, old_policy) == normal(new_feed, new_policy)
        and old_policy.bounds == new_policy.bounds
    ):
        return None
    ttl = timedelta(minutes=state.ttl_minutes) if state.ttl_minutes else None
    due = schedule.next_poll_time(
        last, normal(new_feed, new_policy), new_policy.bounds, new_policy.jitter, rng, ttl=ttl
    )
    return max(due, now)


def horizon(policy: PollPolicy) -> timedelta:
    """The furthest ahead a poll is ever scheduled: the longest interval or backoff, and its jitter."""
    longest = max(policy.bounds.maximum, schedule.BACKOFF_CAP, schedule.RETRY_AFTER_MAX)
    return longest * (1 + max(policy.jitter, 0.1))


def decide_poll(seen: Observation, policy: PollPolicy, now: datetime, rng: random.Random) -> PollIntent:
    """Everything one poll of one feed decides (see the module docstring)."""
    fetched = seen.fetched
    if fetched.status is FetchStatus.GONE:
        return _gone(seen, now)
    if fetched.status is FetchStatus.ERROR:
        return _failure(seen, policy, fetched.error_class or "protocol_error", fetched.error or "", now, rng)
    if fetched.status is FetchStatus.NOT_MODIFIED:
        return _not_modified(seen, policy, now, rng)
    if seen.parse_error is not None:
        return _failure(seen, policy, "parse_error", seen.parse_error, now, rng)
    if seen.identified is None:
        return _unchanged(seen, policy, now, rng)
    return _parsed(seen, seen.identified, policy, now, rng)


def redirect_progress(state: FeedState, permanent_target: str | None) -> tuple[str | None, int, str | None]:
    """After a poll that parsed: (candidate, consecutive count, target to move to now or None).

    Only a chain of 301 / 308 counts (``FetchResult.permanent_redirect``); any 302 / 307 on the way, or no
    redirect, starts over, and so does a failed poll. A 304 changes nothing.
    """
    if permanent_target is None:
        return None, 0, None
    count = state.redirect_count + 1 if permanent_target == state.redirect_candidate else 1
    if count >= MOVE_AFTER_POLLS:
        return None, 0, permanent_target
    return permanent_target, count, None


# --- the outcomes ----------------------------------------------------------------------------------------


def _gone(seen: Observation, now: datetime) -> PollIntent:
    feed, fetched = seen.feed, seen.fetched
    state = failed_state(seen.state, "gone", "HTTP 410 Gone: polling stopped", now, next_poll=None)
    state = replace(state, gone=True)
    report = PollReport(feed.url, feed.name, "gone", error_class="gone", error="HTTP 410 Gone")
    message = f"feed {feed.name} ({fetched.url}) is gone (HTTP 410): polling stopped"
    return PollIntent(report, PollWrite(state), log=((logging.ERROR, message),))


def _failure(
    seen: Observation,
    policy: PollPolicy,
    error_class: ErrorClass,
    message: str,
    now: datetime,
    rng: random.Random,
) -> PollIntent:
    """Back off exponentially (never give up: RELIABILITY F9), honouring Retry-After on 429 / 503 (F8)."""
    feed = seen.feed
    interval = _interval(seen, policy, now)
    hint = seen.fetched.retry_after if error_class == "rate_limited" else None
    failures = seen.state.consecutive_failures + 1
    next_poll = schedule.next_retry_time(
        now, failures, interval, policy.bounds, rng, retry_after=schedule.retry_after(hint, now)
    )
    state = failed_state(seen.state, error_class, message, now, next_poll)
    wait = schedule.format_duration(timedelta(seconds=round((next_poll - now).total_seconds())))
    line = f"feed {feed.name}: {error_class}: {message} (failure {failures}, retry in {wait})"
    report = PollReport(feed.url, feed.name, "error", error_class=error_class, error=message)
    return PollIntent(report, PollWrite(state), log=((logging.WARNING, line),))


def failed_state(
    state: FeedState, error_class: ErrorClass, message: str, now: datetime, next_poll: datetime | None
) -> FeedState:
    """A failed poll: one more failure; a permanent redirect in progress starts over."""
    return replace(
        state,
        last_error_at=now,
        last_error_class=error_class,
        last_error=message,
        consecutive_failures=state.consecutive_failures + 1,
        next_poll_at=next_poll,
        redirect_candidate=None,
        redirect_count=0,
    )


def _not_modified(seen: Observation, policy: PollPolicy, now: datetime, rng: random.Random) -> PollIntent:
    state = seen.state
    next_poll = _next_poll(seen, policy, _interval(seen, policy, now), state.ttl_minutes, now, rng)
    new_state = replace(state, last_success_at=now, consecutive_failures=0, next_poll_at=next_poll)
    return PollIntent(PollReport(seen.feed.url, seen.feed.name, "not_modified"), PollWrite(new_state))


def _unchanged(seen: Observation, policy: PollPolicy, now: datetime, rng: random.Random) -> PollIntent:
    """The same bytes as the last parse: nothing can be new, but the response still counts as a success."""
    state = seen.state
    next_poll = _next_poll(seen, policy, _interval(seen, policy, now), state.ttl_minutes, now, rng)
    new_state, events, log = _succeeded(seen, next_poll, state.ttl_minutes, now)
    report = PollReport(seen.feed.url, seen.feed.name, "unchanged")
    return PollIntent(report, PollWrite(new_state, events=events), log=log)


def _parsed(
    seen: Observation, parsed: Identified, policy: PollPolicy, now: datetime, rng: random.Random
) -> PollIntent:
    feed, state = seen.feed, seen.state
    new_items = parsed.new_items
    seeding = not state.seeded and policy.seed_first_poll
    interval = _interval(seen, policy, now, arrived=0 if seeding else len(new_items))
    next_poll = _next_poll(seen, policy, interval, parsed.ttl_minutes, now, rng)
    new_state, events, log = _succeeded(seen, next_poll, parsed.ttl_minutes, now)
    if new_items:
        new_state = replace(new_state, last_new_at=now)
    alertable: tuple[Item, ...] = () if seeding else new_items
    notice = None
    if state.seeded and is_flood(len(new_items), parsed.total):
        novel, notice = _flood_cut(state, new_items, parsed.total, now, interval)
        alertable = novel
        log += ((logging.WARNING, f"feed {feed.name}: flood guard: {notice}"),)
        if state.flood_notice_at is None or now - state.flood_notice_at >= FLOOD_NOTICE_EVERY:
            events += (("flood", notice),)
            new_state = replace(new_state, flood_notice_at=now)
    if parsed.notices:
        log += ((logging.WARNING, f"feed {feed.name}: {'; '.join(parsed.notices)}"),)
    if seeding:
        log += (
            (
                logging.INFO,
                f"feed {feed.name}: first poll, {counted(len(new_items), 'item')} marked seen without alerting",
            ),
        )
    write = PollWrite(
        new_state,
        new_items=new_items,
        seen_keys=parsed.seen_keys,
        seen_link_keys=parsed.seen_link_keys,
        events=events,
    )
    report = PollReport(
        feed.url, feed.name, "seeded" if seeding else "ok", new_items=len(new_items), notice=notice
    )
    return PollIntent(report, write, alertable, log)


def _succeeded(
    seen: Observation, next_poll: datetime, ttl_minutes: int | None, now: datetime
) -> tuple[FeedState, tuple[tuple[FeedEventKind, str], ...], tuple[Log, ...]]:
    """A 200 that the feed's state records: validators, body, success, the redirect's progress or move."""
    state, fetched = seen.state, seen.fetched
    candidate, count, moved_to = redirect_progress(state, fetched.permanent_redirect)
    events: tuple[tuple[FeedEventKind, str], ...] = ()
    log: tuple[Log, ...] = ()
    if moved_to is not None:
        message = (
            f"moved permanently from {state.effective_url or seen.feed.url} to {moved_to} ({MOVE_AFTER_POLLS}"
            f" consecutive polls); alertd fetches the new address, update the config at your convenience"
        )
        events += (("moved", message),)
        log += ((logging.WARNING, f"feed {seen.feed.name}: {message}"),)
    new_state = replace(
        state,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        body_hash=seen.body_hash or state.body_hash,
        first_success_at=state.first_success_at or now,
        last_success_at=now,
        consecutive_failures=0,
        next_poll_at=next_poll,
        gone=False,
        ttl_minutes=ttl_minutes,
        redirect_candidate=candidate,
        redirect_count=count,
        effective_url=moved_to or state.effective_url,
        moved_at=now if moved_to else state.moved_at,
    )
    return new_state, events, log


def _flood_cut(
    state: FeedState, new_items: Sequence[Item], total: int, now: datetime, interval: timedelta
) -> tuple[tuple[Item, ...], str]:
    """Hold back a flood, but not the news in it: items published within the feed's recent window still
    alert. The window reaches back to the last poll that brought new items, or two intervals, whichever is
    longer (a byte-identical poll a minute ago moves nothing); what is older, or undated, is an archive dump
    or changed ids, and is marked seen."""
    last_news = state.last_new_at or state.last_success_at or now
    cutoff = min(last_news, now - 2 * interval)
    novel = tuple(novel_items(new_items, cutoff))
    message = (
        f"{len(new_items)} new items in one poll (the feed has {total}): the feed changed its item ids or "
        f"published a backlog; only the {len(novel)} published after {cutoff:%Y-%m-%d %H:%M} UTC may alert, "
        f"the others were marked seen"
    )
    return novel, message


def _interval(seen: Observation, policy: PollPolicy, now: datetime, *, arrived: int = 0) -> timedelta:
    """The feed's normal interval: its own, or the observed posting rate (``arrived``: new in this poll)."""
    feed = seen.feed
    return schedule.feed_interval(
        feed.interval or policy.interval,
        policy.bounds,
        fixed=feed.interval is not None,
        arrivals=[*seen.arrivals, *[now] * arrived],
        now=now,
    )


def _next_poll(
    seen: Observation,
    policy: PollPolicy,
    interval: timedelta,
    ttl_minutes: int | None,
    now: datetime,
    rng: random.Random,
) -> datetime:
    ttl = timedelta(minutes=ttl_minutes) if ttl_minutes else None
    lifetime = schedule.cache_lifetime(seen.fetched.fresh_for, now)
    return schedule.next_poll_time(
        now, interval, policy.bounds, policy.jitter, rng, ttl=ttl, lifetime=lifetime
    )
