"""``alertd status``: what the daemon is doing, read from the state database (read-only).

Works whether or not the daemon runs: the daemon writes its pid, a heartbeat every 30 s and the outcome of
its last reload into the database, and this module reads them back with everything else worth knowing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alertd import health, outbox, schedule
from alertd.config import Config, default, state_base
from alertd.errors import ConfigError
from alertd.pipeline import next_mail
from alertd.records import DaemonState, FeedState, SubscriberState
from alertd.statelock import holder
from alertd.store import Store
from alertd.strings import counted
from alertd.tomlsource import load as load_toml
from alertd.watchlist import Watchlist

STALE_HEARTBEAT = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    email: str
    schedule: str
    last_digest_at: datetime | None
    """When their schedule was last served (a digest sent, or due with nothing to say)."""
    next_due_at: datetime | None
    """The next mail, from the shared due decision (quiet hours included); None: on the next match."""
    timezone: str = "UTC"
    """Their zone: the times of their mail are shown in it."""
    last_mail_at: datetime | None = None
    """When a mail to them was last accepted by the server (or written to the mailbox); None: none yet."""


@dataclass(frozen=True, slots=True)
class Status:
    running: bool
    pid: int | None
    started_at: datetime | None
    uptime_seconds: float | None
    heartbeat_at: datetime | None
    reload_ok: bool
    reload_at: datetime | None
    reload_error: str | None
    feeds_total: int
    feeds_failing: int
    feeds_paused: int = 0
    feeds: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    subscribers: list[SubscriberStatus] = field(default_factory=list)
    delivery_paused: dict[str, Any] | None = None
    """Set while SMTP delivery is paused on a configuration error: ``since`` and ``reason``."""
    state_rows: dict[str, int] = field(default_factory=dict)
    """Rows per table of the state database (items, matches, outbox...)."""
    busy: str | None = None
    """When no daemon runs but another alertd holds the state (``run --once``): what it is and its pid."""
    attention: list[str] = field(default_factory=list)
    """What needs someone (a failed reload, a gone feed, paused or failed delivery): ``alertd status`` exits 1."""

    def as_json(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, list):
                return [convert(v) for v in value]
            return value

        result: dict[str, Any] = convert(asdict(self))
        return result


def _running(state_path: Path, daemon: DaemonState, now: datetime) -> tuple[bool, int | None, str | None]:
    """Whether a daemon runs on this state, its pid, and what else holds the state when no daemon does
    (``run --once``): from the state lock, which the kernel releases when the process dies however it dies.
    Where this user may not open the lock file (another user's service), from the heartbeat the daemon writes
    every 30 s."""
    try:
        found = holder(state_path)
    except PermissionError:
        if daemon.stopped_at is not None or daemon.heartbeat_at is None:
            return False, daemon.pid, None
        return now - daemon.heartbeat_at < STALE_HEARTBEAT, daemon.pid, None
    if found is None:
        return False, None, None
    if found.purpose != "daemon":
        return False, None, f"{found.purpose} (pid {found.pid})" if found.pid else found.purpose
    return True, found.pid, None


def collect_status(config: Config, watchlist: Watchlist | None, store: Store, now: datetime) -> Status:
    """Everything ``alertd status`` shows, gathered from the store (read only).

    ``watchlist``: the topics, to tell what is pending for each subscriber; None when it cannot be loaded
    (the next digest is then its scheduled time alone).
    """
    daemon = store.daemon_state()
    running, pid, busy = _running(config.state_path, daemon, now)
    configured = {feed.url: feed for feed in config.feeds}
    states = [state for state in store.feeds() if state.url in configured]
    feeds = sorted(
        (_feed_json(state) for state in states), key=lambda f: (-f["consecutive_failures"], f["name"])
    )
    counts = {"pending": 0, "retrying": 0, "failed": 0}
    for message in store.outbox(("pending", "sending", "failed")):
        condition = outbox.condition(message)
        if (
            condition == "sending"
        ):  # being attempted right now: still waiting, as far as a reader is concerned
            condition = "retrying" if message.attempts else "pending"
        counts[condition] += 1
    subscribers = []
    for subscriber in config.subscribers:
        state = store.subscriber_state(subscriber.email)
        # A subscriber the daemon has not met yet is met now: their mail runs from the next match on.
        met = state if state is not None else SubscriberState(subscriber.email, now, now)
        next_at = next_mail(config, watchlist, store, subscriber, met, now).next_at
        last = state.last_digest_at if state is not None else None
        subscribers.append(
            SubscriberStatus(
                subscriber.email,
                subscriber.schedule.text,
                last,
                next_at,
                subscriber.timezone,
                store.last_sent_to(subscriber.email),
            )
        )
    paused = _pause_json(store)
    attention = _attention(daemon, feeds, counts, paused)
    return Status(
        running=running,
        pid=pid if running else None,
        started_at=daemon.started_at,
        uptime_seconds=(now - daemon.started_at).total_seconds() if running and daemon.started_at else None,
        heartbeat_at=daemon.heartbeat_at,
        reload_ok=daemon.reload_ok,
        reload_at=daemon.reload_at,
        reload_error=daemon.reload_error,
        feeds_total=len(configured),
        feeds_failing=sum(1 for f in feeds if f["failing"] and not configured[f["url"]].paused),
        feeds_paused=sum(1 for feed in config.feeds if feed.paused),
        feeds=feeds,
        outbox=counts,
        subscribers=subscribers,
        delivery_paused=paused,
        state_rows=store.counts(),
        busy=busy,
        attention=attention,
    )


def _attention(
    daemon: DaemonState, feeds: list[dict[str, Any]], counts: dict[str, int], paused: dict[str, Any] | None
) -> list[str]:
    """What someone should look at, one line each (``alertd status`` then exits 1)."""
    found = []
    if not daemon.reload_ok:
        found.append("the last reload failed: the daemon runs the previous configuration")
    gone = [f["name"] for f in feeds if f["gone"]]
    if gone:
        found.append(f"feed{'s' if len(gone) > 1 else ''} gone (HTTP 410): {', '.join(gone)}")
    if paused is not None:
        found.append("SMTP delivery is paused")
    if counts.get("failed"):
        found.append(f"{counted(counts['failed'], 'message')} failed for good")
    return found


def _pause_json(store: Store) -> dict[str, Any] | None:
    pause = store.delivery_pause()
    return None if pause is None else {"since": pause.since, "reason": pause.reason}


def _feed_json(state: FeedState) -> dict[str, Any]:
    verdict = health.judge(state)
    return {
        "name": state.name,
        "url": state.url,
        "condition": verdict.condition,
        "failing": verdict.in_trouble,
        "gone": state.gone,
        "consecutive_failures": state.consecutive_failures,
        "last_success_at": state.last_success_at,
        "last_error_class": state.last_error_class,
        "last_error": state.last_error,
        "next_poll_at": state.next_poll_at,
    }


def _when(moment: datetime | None, zone: str | None = None) -> str:
    """``moment`` with its zone: the subscriber's ``zone`` when given, else the system's; "never" for None."""
    return "never" if moment is None else schedule.format_moment(moment, zone)


def format_status(status: Status, now: datetime, *, utc: bool = False) -> str:
    """The human-readable report: times in the system's zone, a subscriber's mail in theirs (``utc``: all in
    UTC)."""
    lines = []
    if status.running and status.uptime_seconds is not None:
        uptime = schedule.format_duration(timedelta(seconds=int(status.uptime_seconds)))
        lines.append(
            f"daemon:      running (pid {status.pid}, up {uptime}, heartbeat {_when(status.heartbeat_at)})"
        )
        if status.heartbeat_at is None or now - status.heartbeat_at >= STALE_HEARTBEAT:
            lines.append(
                "             but it has not written its state since then: is the disk full, or read-only? "
                "It delivers nothing until it can (nothing is sent twice)"
            )
    else:
        since = (
            f"last started {_when(status.started_at)}" if status.started_at else "never started on this state"
        )
        lines.append(f"daemon:      not running ({since})")
        if status.busy:
            lines.append(f"             but `alertd {status.busy}` is using the state now")
    if status.reload_at is None:
        lines.append("config:      OK (not loaded by a daemon yet)")
    elif status.reload_ok:
        lines.append(f"config:      loaded OK at {_when(status.reload_at)}")
    else:
        lines.append(
            f"config:      LAST RELOAD FAILED ({_when(status.reload_at)}); still running the previous one:"
        )
        lines.extend(f"             {line}" for line in (status.reload_error or "").splitlines())
    lines.append(
        f"feeds:       {status.feeds_total - status.feeds_failing - status.feeds_paused} ok, "
        f"{status.feeds_failing} failing" + (f", {status.feeds_paused} paused" if status.feeds_paused else "")
    )
    for feed in status.feeds:
        if feed["failing"]:
            what = (
                "GONE (HTTP 410)"
                if feed["gone"]
                else f"{feed['last_error_class']} ×{feed['consecutive_failures']}"
            )
            lines.append(f"  ! {feed['name']}: {what}; last success {_when(feed['last_success_at'])}")
    rows = status.state_rows
    if rows:
        lines.append(
            f"state:       {rows.get('items', 0)} items, {rows.get('matches', 0)} matches, "
            f"{rows.get('outbox', 0)} messages kept"
        )
    box = status.outbox
    lines.append(f"outbox:      {box['pending']} pending, {box['retrying']} retrying, {box['failed']} failed")
    if status.delivery_paused is not None:
        lines.append(
            f"delivery:    PAUSED since {_when(status.delivery_paused['since'])}: {status.delivery_paused['reason']}"
        )
        lines.append(
            "             fix [delivery.smtp] or the password, then reload the config or run `alertd outbox retry`"
        )
    for sub in status.subscribers:
        zone = None if utc else sub.timezone
        last = f"last mail {_when(sub.last_mail_at, zone)}" if sub.last_mail_at else "no mail yet"
        if sub.next_due_at is None:
            upcoming = "next on the next match"
        elif sub.next_due_at <= now:
            upcoming = "next now (due)"
        else:
            upcoming = f"next {_when(sub.next_due_at, zone)}"
        lines.append(f"subscriber:  {sub.email} ({sub.schedule}, {sub.timezone}): {last}, {upcoming}")
    lines.extend(f"attention:   {line}" for line in status.attention)
    return "\n".join(lines)


def without_config(config_path: Path, environ: Mapping[str, str], now: datetime) -> list[str]:
    """What ``alertd status`` can still tell when the config no longer loads: whether a daemon runs on the
    state that config names (its ``[state] path`` if the file still parses as TOML, else the default), and
    what configuration it runs."""
    try:
        raw = load_toml(config_path).data.get("state", {})
    except ConfigError:
        raw = {}
    named = raw.get("path") if isinstance(raw, dict) else None
    relative = Path(named) if isinstance(named, str) and named else default("state", "path")
    state_path = state_base(config_path, environ) / relative
    if not state_path.exists():
        return [f"daemon:      no state at {state_path}: alertd has not run with this config"]
    with Store.open(state_path, readonly=True) as store:
        daemon = store.daemon_state()
    running, pid, busy = _running(state_path, daemon, now)
    if not running:
        held = f"; `alertd {busy}` is using it now" if busy else ""
        return [
            f"daemon:      not running (last started {_when(daemon.started_at)}; state {state_path}{held})"
        ]
    loaded = (
        _when(daemon.reload_at) if daemon.reload_ok else f"{_when(daemon.reload_at)}, its last reload failed"
    )
    return [
        f"daemon:      running (daemon, pid {pid}, since {_when(daemon.started_at)}), with the configuration it "
        f"loaded at {loaded}: the file on disk no longer loads (above), fix it before a reload"
    ]


def feed_judgements(config: Config, store: Store) -> list[health.Judgement]:
    """The condition of each configured feed."""
    states = {state.url: state for state in store.feeds()}
    return [health.judge(states.get(feed.url)) for feed in config.feeds]


def status_line(config: Config, store: Store, state_problem: str | None) -> str:
    """One line for ``systemctl status``: feeds ok/failing, pending mail, last delivery; and first of all,
    a state that cannot be written."""
    judgements = feed_judgements(config, store)
    failing = sum(1 for verdict in judgements if verdict.in_trouble)
    pending = len(store.outbox(("pending", "sending")))
    sent = store.last_sent_at()
    last = _when(sent)
    line = (
        f"{len(judgements) - failing}/{len(judgements)} feeds ok, {failing} failing; "
        f"{pending} messages pending; last delivery {last}"
    )
    if state_problem is not None:
        return f"STATE NOT WRITABLE, delivery stopped: {state_problem}; {line}"
    return line
