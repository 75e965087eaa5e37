"""``alertd status``: what the daemon is doing, read from the state database (read-only).

Works whether or not the daemon runs: the daemon writes its pid, a heartbeat every 30 s and the outcome of
its last reload into the database, and this module reads them back with everything else worth knowing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alertd import health, outbox, schedule
from alertd.config import Config
from alertd.pipeline import next_mail
from alertd.records import DaemonState, FeedState
from alertd.statelock import holder
from alertd.store import Store
from alertd.watchlist import Watchlist

STALE_HEARTBEAT = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    email: str
    schedule: str
    last_digest_at: datetime | None
    next_due_at: datetime | None


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
    feeds: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    subscribers: list[SubscriberStatus] = field(default_factory=list)
    delivery_paused: dict[str, Any] | None = None
    """Set while SMTP delivery is paused on a configuration error: ``since`` and ``reason``."""
    state_rows: dict[str, int] = field(default_factory=dict)
    """Rows per table of the state database (items, matches, outbox...)."""
    busy: str | None = None
    """When no daemon runs but another alertd holds the state (``run --once``): what it is and its pid."""

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


def _running(config: Config, daemon: DaemonState, now: datetime) -> tuple[bool, int | None, str | None]:
    """Whether a daemon runs on this state, its pid, and what else holds the state when no daemon does
    (``run --once``): from the state lock, which the kernel releases when the process dies however it dies.
    Where this user may not open the lock file (another user's service), from the heartbeat the daemon writes
    every 30 s."""
    try:
        found = holder(config.state_path)
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
    running, pid, busy = _running(config, daemon, now)
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
        next_at = None
        if state is not None:
            next_at = next_mail(config, watchlist, store, subscriber, state, now).next_at
        last = state.last_digest_at if state is not None else None
        subscribers.append(SubscriberStatus(subscriber.email, subscriber.schedule.text, last, next_at))
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
        feeds_failing=sum(1 for f in feeds if f["failing"]),
        feeds=feeds,
        outbox=counts,
        subscribers=subscribers,
        delivery_paused=_pause_json(store),
        state_rows=store.counts(),
        busy=busy,
    )


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


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "never"


def format_status(status: Status, now: datetime) -> str:
    """The human-readable report."""
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
        lines.append(f"daemon:      not running (last started {_when(status.started_at)})")
        if status.busy:
            lines.append(f"             but `alertd {status.busy}` is using the state now")
    if status.reload_ok:
        lines.append(f"config:      loaded OK ({_when(status.reload_at)})")
    else:
        lines.append(
            f"config:      LAST RELOAD FAILED ({_when(status.reload_at)}); still running the previous one:"
        )
        lines.extend(f"             {line}" for line in (status.reload_error or "").splitlines())
    lines.append(
        f"feeds:       {status.feeds_total - status.feeds_failing} ok, {status.feeds_failing} failing"
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
        lines.append(
            f"subscriber:  {sub.email} ({sub.schedule}): last digest {_when(sub.last_digest_at)}, "
            f"next {_when(sub.next_due_at)}"
        )
    return "\n".join(lines)


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
    last = sent.astimezone().strftime("%Y-%m-%d %H:%M") if sent else "never"
    line = (
        f"{len(judgements) - failing}/{len(judgements)} feeds ok, {failing} failing; "
        f"{pending} messages pending; last delivery {last}"
    )
    if state_problem is not None:
        return f"STATE NOT WRITABLE, delivery stopped: {state_problem}; {line}"
    return line
