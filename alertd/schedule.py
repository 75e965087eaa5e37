"""When things happen: digest times per subscriber, and the next poll of a feed. Pure: ``now`` is passed in.

Digest schedules are written by users as ``immediate``, ``hourly``, ``daily HH:MM``, ``weekly DAY HH:MM``
or a 5-field cron expression, in the subscriber's time zone. Times are computed on the local wall clock and
converted to UTC, so a ``daily 07:00`` digest stays at 07:00 local across DST changes and fires exactly once
on the days the clocks move: a wall time that does not exist (spring forward) fires one hour later on the
wall clock; a wall time that happens twice (fall back) fires at its first occurrence only.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from alertd.models import Hint

UTC = timezone.utc  # datetime.UTC is Python 3.11+

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {
    **{d: i for i, d in enumerate(_DAYS)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    **{name: i for i, name in enumerate(("lun", "mar", "mer", "jeu", "ven", "sam", "dim"))},
    **{
        name: i
        for i, name in enumerate(("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"))
    },
}
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """A parsed subscriber schedule. ``kind`` is immediate, hourly, daily, weekly or cron."""

    kind: str
    text: str
    hour: int = 0
    minute: int = 0
    weekday: int | None = None  # 0 = Monday
    cron: str | None = None

    @property
    def is_immediate(self) -> bool:
        return self.kind == "immediate"


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes. Units: s, m, h, d, w. Raises ``ValueError`` with a readable message."""
    found = _DURATION.match(text)
    if not found:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit (s, m, h, d, w), e.g. '15m'"
        )
    value = int(found.group(1)) * _DURATION_UNITS[found.group(2)]
    if value <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return timedelta(seconds=value)


def format_moment(moment: datetime, zone: str | None = None, *, seconds: bool = False) -> str:
    """An instant as the commands print it, with its zone: ``zone`` (IANA) when given, else the system's
    (``2026-12-02 19:42 CET``; ``19:42:10`` with ``seconds``). ``--utc`` makes the system's zone UTC."""
    shown = moment.astimezone(ZoneInfo(zone)) if zone else moment.astimezone()
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def format_duration(delta: timedelta) -> str:
    """``15m``, ``2h``, ``16m23s``: exact in the config's own units, at most two units when not round."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    for unit, smaller in (("d", "h"), ("h", "m"), ("m", "s")):
        size = _DURATION_UNITS[unit]
        if seconds >= size:
            rest = (seconds % size) // _DURATION_UNITS[smaller]
            return f"{seconds // size}{unit}{rest}{smaller}" if rest else f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_digest_schedule(text: str) -> DigestSchedule:
    """Parse a subscriber's ``schedule`` value; raise ``ValueError`` naming what is wrong."""
    words = text.strip().lower().split()
    if words == ["immediate"]:
        return DigestSchedule("immediate", text)
    if words == ["hourly"]:
        return DigestSchedule("hourly", text, minute=0)
    if len(words) == 2 and words[0] == "daily":
        hour, minute = _parse_hhmm(words[1], text)
        return DigestSchedule("daily", text, hour=hour, minute=minute)
    if len(words) == 3 and words[0] == "weekly":
        day = _DAY_ALIASES.get(words[1])
        if day is None:
            raise ValueError(f"invalid schedule {text!r}: unknown day {words[1]!r} (use mon..sun)")
        hour, minute = _parse_hhmm(words[2], text)
        return DigestSchedule("weekly", text, hour=hour, minute=minute, weekday=day)
    if len(words) == 5:
        try:
            _cron_trigger(text.strip(), UTC)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {text!r}: {exc}") from exc
        return DigestSchedule("cron", text, cron=text.strip())
    raise ValueError(
        f"invalid schedule {text!r}: expected 'immediate', 'hourly', 'daily HH:MM', "
        "'weekly DAY HH:MM' or a 5-field cron expression"
    )


def _parse_hhmm(word: str, text: str) -> tuple[int, int]:
    found = _HHMM.match(word)
    if not found:
        raise ValueError(f"invalid schedule {text!r}: time {word!r} is not HH:MM (00:00 to 23:59)")
    return int(found.group(1)), int(found.group(2))


def next_digest_time(schedule: DigestSchedule, after: datetime, tz: ZoneInfo) -> datetime:
    """The first digest instant strictly after ``after`` (aware), as an aware UTC datetime.

    ``immediate`` is due at once: it returns ``after`` itself.
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    if schedule.kind == "immediate":
        return after
    if schedule.kind == "hourly":
        base = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return base + timedelta(hours=1)
    if schedule.kind == "cron":
        assert schedule.cron is not None
        trigger = _cron_trigger(schedule.cron, tz)
        fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
        if fire is None:  # pragma: no cover - a valid 5-field cron always fires again
            raise ValueError(f"cron expression {schedule.cron!r} never fires")
        return fire.astimezone(UTC)
    local_day = after.astimezone(tz).date() - timedelta(days=1)
    for _ in range(9):
        if schedule.weekday is None or local_day.weekday() == schedule.weekday:
            candidate = _wall_time_to_utc(local_day.year, local_day.month, local_day.day, schedule, tz)
            if candidate > after:
                return candidate
        local_day += timedelta(days=1)
    raise AssertionError("unreachable: a daily or weekly schedule fires within 8 days")  # pragma: no cover


def _cron_trigger(expression: str, tz: tzinfo) -> Any:
    """APScheduler's cron arithmetic (pure date computation), imported only when a cron schedule is used, so
    the deciders that ask for digest times do not import the scheduler's machinery (it pulls in asyncio)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(expression, timezone=tz)


def _wall_time_to_utc(year: int, month: int, day: int, schedule: DigestSchedule, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time, with PEP 495 ``fold=0`` semantics.

    A wall time inside a spring-forward gap is read with the offset in force before the gap, so ``02:30``
    on a day that jumps from 02:00 to 03:00 fires at 03:30 local; a repeated wall time fires at its first
    occurrence.
    Either way the day has exactly one instant.
    """
    naive = datetime(year, month, day, schedule.hour, schedule.minute)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


BACKOFF_CAP = timedelta(hours=24)
"""The longest a failing feed waits between two polls (RELIABILITY F9)."""
_MAX_DOUBLINGS = 62
"""2**62 times any delay is past every cap: beyond, doubling again would only overflow ``timedelta``."""


def backoff(
    attempt: int, first: timedelta, cap: timedelta, *, rng: random.Random | None = None, jitter: float = 0.0
) -> timedelta:
    """The delay before attempt ``attempt + 1`` after ``attempt`` failures: ``first``, then ×2 each time, at
    most ``cap``; spread by ±``jitter`` (a fraction) when ``rng`` is given, still at most ``cap``.

    One rule for both retries alertd makes: a failing feed (from its poll interval, ±10 %, ≤ 24 h) and a
    deferred message (1 min, 2 min, 4 min... ≤ 1 h; :mod:`alertd.outbox`).
    """
    doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
    seconds = min(first.total_seconds() * 2.0**doublings, cap.total_seconds())
    if rng is not None and jitter:
        seconds = min(seconds * rng.uniform(1 - jitter, 1 + jitter), cap.total_seconds())
    return timedelta(seconds=seconds)


# --- when to poll a feed next (see docs/polling.md) -------------------------------------------------------

ADAPT_SAMPLES = 20
"""How many of a feed's most recent new items measure its posting rate."""
ADAPT_MIN_SAMPLES = 3
"""Fewer new items than this since the feed was seeded: too little evidence, the configured interval holds."""
RETRY_AFTER_MIN = timedelta(seconds=60)
RETRY_AFTER_MAX = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class PollBounds:
    """The range every computed poll interval stays within: ``[poll] min_interval`` and ``max_interval``."""

    minimum: timedelta
    maximum: timedelta

    def clamp(self, delay: timedelta) -> timedelta:
        return min(max(delay, self.minimum), self.maximum)


def observed_interval(arrivals: Sequence[datetime], now: datetime) -> timedelta | None:
    """A feed's posting interval, from the first-seen times of its recent new items (never their pubDate).

    The span from the oldest of the last ``ADAPT_SAMPLES`` arrivals up to ``now``, divided by their number:
    items found together in one poll each count, and a feed that falls silent drifts towards longer
    intervals by itself. None with fewer than ``ADAPT_MIN_SAMPLES`` arrivals.
    """
    if len(arrivals) < ADAPT_MIN_SAMPLES:
        return None
    recent = sorted(arrivals)[-ADAPT_SAMPLES:]
    return max(now - recent[0], timedelta(0)) / len(recent)


def feed_interval(
    configured: timedelta, bounds: PollBounds, *, fixed: bool, arrivals: Sequence[datetime], now: datetime
) -> timedelta:
    """The normal interval of one feed, within ``bounds``.

    ``fixed``: the feed sets its own ``interval`` in the config, which is kept (only clamped). Otherwise the
    interval follows the observed posting rate once there is enough evidence, else ``configured``.
    """
    observed = None if fixed else observed_interval(arrivals, now)
    return bounds.clamp(observed if observed is not None else configured)


def cache_lifetime(hint: Hint | None, now: datetime) -> timedelta | None:
    """How long a response stays fresh (``FetchResult.fresh_for``), as a duration from ``now``; None when
    there is no hint or it has run out."""
    if hint is None:
        return None
    lifetime = hint - now if isinstance(hint, datetime) else hint
    return lifetime if lifetime > timedelta(0) else None


def retry_after(hint: Hint | None, now: datetime) -> timedelta | None:
    """``Retry-After`` (``FetchResult.retry_after``) as a delay from ``now``, clamped to [60 s, 24 h]."""
    if hint is None:
        return None
    delay = hint - now if isinstance(hint, datetime) else hint
    return min(max(delay, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


def next_poll_time(
    now: datetime,
    interval: timedelta,
    bounds: PollBounds,
    jitter: float,
    rng: random.Random,
    *,
    ttl: timedelta | None = None,
    lifetime: timedelta | None = None,
) -> datetime:
    """After a successful poll: ``interval``, or longer when the feed's ``<ttl>`` or the response's cache
    lifetime asks for it, within ``bounds``, spread by ±``jitter`` but never below ``bounds.minimum``."""
    wait = bounds.clamp(max(interval, ttl or timedelta(0), lifetime or timedelta(0)))
    return now + _spread(wait, jitter, bounds.minimum, rng)


def next_retry_time(
    now: datetime,
    failures: int,
    interval: timedelta,
    bounds: PollBounds,
    rng: random.Random,
    *,
    retry_after: timedelta | None = None,
) -> datetime:
    """After ``failures`` consecutive failures: exponential backoff from the feed's interval (±10 %, ≤ 24 h),
    never sooner than ``bounds.minimum`` nor than the server's (already clamped) ``Retry-After``."""
    delay = max(
        backoff(failures, interval, BACKOFF_CAP, rng=rng, jitter=0.1),
        bounds.minimum,
        retry_after or timedelta(0),
    )
    return now + delay


def _spread(wait: timedelta, jitter: float, floor: timedelta, rng: random.Random) -> timedelta:
    """``wait`` ± ``jitter``; a result under ``floor`` is redrawn above it, so feeds at the floor still spread."""
    seconds = wait.total_seconds() * rng.uniform(1 - jitter, 1 + jitter)
    if seconds < floor.total_seconds():
        seconds = floor.total_seconds() * rng.uniform(1, 1 + jitter)
    return timedelta(seconds=seconds)
