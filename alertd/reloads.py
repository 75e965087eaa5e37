"""What a reload decides (pure): when a changed file is ready to be loaded, and whether a new configuration may
replace the running one.

An editor that truncates a file before writing it, or a copy caught halfway, must never become the running
configuration. So:

- the file watcher loads a file only once it is **stable**: the same size and modification time at two looks
  in a row (:func:`watch`);
- a reload that would remove **every** topic, every feed or every subscriber is refused until the files have
  stayed that way for :data:`EMPTY_GRACE` (:func:`verdict`): an empty watchlist is almost always a save in
  progress, and applying it would let the poll of that moment match nothing, for good;
- a file that fails to load keeps the last good configuration (the daemon reports it like any ConfigError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from alertd.config import Config
from alertd.watchlist import Watchlist

EMPTY_GRACE = timedelta(seconds=10)
"""How long a configuration with no topic, no feed or no subscriber must stay so before it is applied."""

Stamps = Mapping[Path, tuple[int, int] | None]
"""Each watched file's (mtime in ns, size), None when it does not exist."""


@dataclass(frozen=True, slots=True)
class WatchState:
    """What the watcher knows of the files."""

    loaded: Stamps = field(default_factory=dict)
    """The stamps the last load (successful or not) was made from."""
    seen: Stamps = field(default_factory=dict)
    """The stamps at the last look."""
    seen_since: float | None = None
    """When (monotonic seconds) the files were first seen as they are now; None while they are as loaded."""


def watch(state: WatchState, stamps: Stamps, now: float) -> tuple[WatchState, bool]:
    """One look at the files: the new state, and whether to load them now (changed, and stable since the
    previous look)."""
    if stamps == state.loaded:
        return WatchState(state.loaded, stamps, None), False
    if stamps != state.seen:
        return WatchState(state.loaded, stamps, now), False
    return state, True


def stable_for(state: WatchState, now: float) -> timedelta:
    """How long the files have been as they are now (zero when they just changed, or were never seen)."""
    return (
        timedelta(seconds=max(0.0, now - state.seen_since)) if state.seen_since is not None else timedelta(0)
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a loaded configuration replaces the running one."""

    apply: bool
    reason: str = ""
    """Why not (for the log and the status line)."""


def verdict(
    old: Config, old_watchlist: Watchlist, new: Config, new_watchlist: Watchlist, *, stable_for: timedelta
) -> Verdict:
    """Apply, unless the new configuration removes every topic, feed or subscriber and has not stayed so for
    :data:`EMPTY_GRACE` yet."""
    emptied = [
        what
        for what, before, after in (
            ("topic", old_watchlist.topics, new_watchlist.topics),
            ("feed", old.feeds, new.feeds),
            ("subscriber", old.subscribers, new.subscribers),
        )
        if before and not after
    ]
    if emptied and stable_for < EMPTY_GRACE:
        files = ", ".join(str(p) for p in dict.fromkeys((new.path, new.watchlist)))
        return Verdict(
            False,
            f"the new configuration has no {' and no '.join(emptied)} (a file saved halfway?): keeping the running "
            f"one; it is applied if {files} stay so for {int(EMPTY_GRACE.total_seconds())} s",
        )
    return Verdict(True)


def describe_changes(
    old: Config, old_watchlist: Watchlist, new: Config, new_watchlist: Watchlist
) -> list[str]:
    """Human-readable lines naming the feeds, topics and subscribers added, removed or modified."""
    lines: list[str] = []

    def compare(kind: str, before: dict[str, object], after: dict[str, object]) -> None:
        for key in sorted(after.keys() - before.keys()):
            lines.append(f"{kind} added: {key}")
        for key in sorted(before.keys() - after.keys()):
            lines.append(f"{kind} removed: {key}")
        for key in sorted(before.keys() & after.keys()):
            if before[key] != after[key]:
                lines.append(f"{kind} modified: {key}")

    compare("feed", {f.url: f for f in old.feeds}, {f.url: f for f in new.feeds})
    compare("topic", {t.id: t for t in old_watchlist.topics}, {t.id: t for t in new_watchlist.topics})
    compare("subscriber", {s.email: s for s in old.subscribers}, {s.email: s for s in new.subscribers})
    return lines
