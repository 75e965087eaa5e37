"""When is this subscriber's next mail? One answer (pure), used by the flush, the scheduler and ``alertd status``.

Two kinds of mail go to a subscriber:

- the **digest**, on their ``schedule`` (immediate, hourly, daily, weekly, cron) in their time zone; an
  ``immediate`` subscriber's digest goes as soon as something is pending;
- **alerts**, for topics with ``priority = "immediate"``, to subscribers on any other schedule: ``[digest]
  debounce`` after the first pending alert match, so matches close together share one message.

Neither goes during the subscriber's ``quiet_hours``: mail due then is held until the window ends (never
dropped). Nothing here reads the clock or the store: the caller says what is pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alertd import schedule
from alertd.config import SubscriberConfig
from alertd.quiet import release_time
from alertd.records import SubscriberState


@dataclass(frozen=True, slots=True)
class NextMail:
    """When each kind of mail to one subscriber is due."""

    digest_at: datetime
    """When the digest may go: its scheduled time (for ``immediate``: now), held past quiet hours. At or
    before ``now``: due, even with nothing to say (the schedule is then served by saying nothing)."""
    alerts_at: datetime | None
    """When the pending priority alerts go (debounced, held past quiet hours); None: none pending."""
    waits_for_matches: bool = False
    """An ``immediate`` subscriber with nothing pending: their next mail comes with the next match."""

    @property
    def next_at(self) -> datetime | None:
        """The earliest time a flush has something to send them; None: nothing until new matches arrive."""
        candidates = [self.alerts_at] if self.alerts_at is not None else []
        if not self.waits_for_matches:
            candidates.append(self.digest_at)
        return min(candidates) if candidates else None

    def digest_due(self, now: datetime) -> bool:
        return self.digest_at <= now

    def alerts_due(self, now: datetime) -> bool:
        return self.alerts_at is not None and self.alerts_at <= now


def clamped(state: SubscriberState, now: datetime) -> SubscriberState:
    """``state`` with no time after ``now``: a clock that was ahead and then corrected (NTP after boot, a
    resumed VM) must not leave a subscriber's next digest, or the matches that are theirs, weeks away."""
    if state.since <= now and state.last_digest_at <= now:
        return state
    return SubscriberState(state.email, min(state.since, now), min(state.last_digest_at, now))


def next_mail(
    subscriber: SubscriberConfig,
    state: SubscriberState,
    *,
    digest_pending: bool,
    first_alert_match: datetime | None,
    debounce: timedelta,
    now: datetime,
) -> NextMail:
    """When ``subscriber``'s digest and alerts are due.

    ``digest_pending``: matches wait for their digest. ``first_alert_match``: when the oldest match waiting
    for an alert was made (None: none; only priority topics the subscriber follows count).
    """
    zone = ZoneInfo(subscriber.timezone)
    quiet = subscriber.quiet_hours
    state = clamped(state, now)
    if subscriber.schedule.is_immediate:
        # Their digest already goes at once: no separate alerts.
        return NextMail(release_time(quiet, now, zone), None, waits_for_matches=not digest_pending)
    scheduled = schedule.next_digest_time(subscriber.schedule, state.last_digest_at, zone)
    digest_at = release_time(quiet, max(scheduled, now), zone)
    alerts_at = None
    if first_alert_match is not None:
        alerts_at = release_time(quiet, max(first_alert_match + debounce, now), zone)
    return NextMail(digest_at, alerts_at)
