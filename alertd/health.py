"""What condition a feed is in (pure): one judgement for ``alertd feeds``, ``alertd status``, the digest's
feed-health section, the metrics and the systemd STATUS line.

    new       configured, never polled successfully, no failure yet
    ok        its last poll succeeded
    moved     healthy, fetched from the address a confirmed permanent redirect gave
    failing   its last poll failed (since its last success, or since its first failure if it never had one)
    gone      it answered 410 Gone and is no longer polled

A reader hears about a feed in a digest only when it matters to them: gone, failing for longer than
``[digest] feed_health_after`` (or never worked), and the moves and floods recorded since their last digest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alertd.models import ErrorClass, FeedHealth
from alertd.records import FeedEvent, FeedState

FeedCondition = Literal["new", "ok", "moved", "failing", "gone"]
CONDITIONS: tuple[FeedCondition, ...] = ("new", "ok", "moved", "failing", "gone")


@dataclass(frozen=True, slots=True)
class Judgement:
    """A feed's condition and what goes with it."""

    condition: FeedCondition
    since: datetime | None = None
    """ok: last success; failing: since when (the last success, else the first failure); gone: when it said
    so; moved: when it moved; new: None."""
    error_class: ErrorClass | None = None
    """failing, gone: the class of the last error."""
    attempts: int = 0
    """failing, gone: consecutive failed polls."""
    target: str | None = None
    """moved: where the feed is fetched from now."""

    @property
    def in_trouble(self) -> bool:
        """Failing or gone: what the status line counts and ``alertd status`` flags."""
        return self.condition in ("failing", "gone")


def judge(state: FeedState | None) -> Judgement:
    """The condition of a feed from its stored state (None: the store has never heard of it)."""
    if state is None:
        return Judgement("new")
    if state.gone:
        return Judgement("gone", state.last_error_at, state.last_error_class, state.consecutive_failures)
    if state.consecutive_failures:
        since = state.last_success_at or state.last_error_at
        return Judgement("failing", since, state.last_error_class, state.consecutive_failures)
    if state.last_success_at is None:
        return Judgement("new")
    if state.effective_url:
        return Judgement("moved", state.moved_at, target=state.effective_url)
    return Judgement("ok", state.last_success_at)


def census(judgements: Iterable[Judgement]) -> dict[FeedCondition, int]:
    """How many feeds are in each condition (every condition present, zeros included)."""
    counted = Counter(j.condition for j in judgements)
    return {condition: counted.get(condition, 0) for condition in CONDITIONS}


def reader_notices(
    states: Sequence[FeedState],
    configured: Collection[str],
    events: Sequence[FeedEvent],
    *,
    failing_after: timedelta,
    now: datetime,
) -> list[FeedHealth]:
    """The feeds a reader should hear about in a digest (see the module docstring).

    ``states``: every stored feed; ``configured``: the URLs in the config now (others are not the reader's
    business); ``events``: moves and floods recorded since the reader's last digest.
    """
    notices: list[FeedHealth] = []
    by_url = {state.url: state for state in states}
    for state in states:
        if state.url not in configured:
            continue
        verdict = judge(state)
        if verdict.condition == "gone":
            problem = "gone (HTTP 410): polling stopped"
            notices.append(FeedHealth(state.name, state.url, problem, state.last_error_at, kind="gone"))
        elif verdict.condition == "failing" and state.last_error_at is not None:
            since = verdict.since or state.last_error_at
            if now - since >= failing_after or not state.last_success_at:
                problem = f"failing: {state.last_error_class} ({state.consecutive_failures} attempts)"
                notices.append(
                    FeedHealth(
                        state.name,
                        state.url,
                        problem,
                        since,
                        kind="failing",
                        error_class=state.last_error_class,
                        attempts=state.consecutive_failures,
                    )
                )
    for event in events:
        if event.feed_url in configured:
            moved = event.kind == "moved" and event.feed_url in by_url
            notices.append(
                FeedHealth(
                    event.feed_name,
                    event.feed_url,
                    event.message,
                    event.at,
                    kind=event.kind,
                    target=by_url[event.feed_url].effective_url if moved else None,
                )
            )
    return notices
