"""Quiet hours (pure): a daily window, in the reader's time zone, during which their mail is held.

    quiet_hours = "22:00-07:00"   # may cross midnight; the start is inside the window, the end is not

Mail is never dropped: :func:`release_time` says when something due at a given instant may go out, which is
the instant itself outside the window, else the end of the window. Times are wall-clock times in the
reader's zone, so the window follows daylight-saving changes; an end that falls in a spring-forward gap
resolves to the instant just after the gap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

UTC = timezone.utc  # datetime.UTC is Python 3.11+

__all__ = ["QuietHours", "in_quiet_hours", "parse_quiet_hours", "release_time"]

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window ``[start, end)`` of local wall-clock time; ``start > end`` crosses midnight."""

    start: time
    end: time

    @property
    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def parse_quiet_hours(text: str) -> QuietHours:
    """``"HH:MM-HH:MM"`` → QuietHours; ValueError with a readable message otherwise."""
    found = _WINDOW.match(text)
    if not found:
        raise ValueError(f"expected a window like '22:00-07:00', got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise ValueError(f"invalid time in quiet hours {text!r}")
    window = QuietHours(time(h1, m1), time(h2, m2))
    if window.start == window.end:
        raise ValueError(f"quiet hours {text!r} start and end at the same time")
    return window


def in_quiet_hours(window: QuietHours | None, moment: datetime, tz: tzinfo) -> bool:
    """Whether ``moment`` (aware) falls inside the window, in the zone ``tz``."""
    if window is None:
        return False
    return window.contains(moment.astimezone(tz).time().replace(tzinfo=None))


def release_time(window: QuietHours | None, moment: datetime, tz: tzinfo) -> datetime:
    """When mail due at ``moment`` may be sent: ``moment`` itself, or the end of the quiet window it falls in."""
    if window is None or not in_quiet_hours(window, moment, tz):
        return moment
    local = moment.astimezone(tz)
    end_day: date = local.date()
    if window.start > window.end and local.time().replace(tzinfo=None) >= window.start:
        end_day += timedelta(days=1)
    end = datetime.combine(end_day, window.end).replace(tzinfo=tz, fold=0).astimezone(UTC)
    # In a spring-forward gap the wall time maps before ``moment`` on rare zones; never go backwards.
    return max(end, moment)
