"""The configuration file: TOML in, a frozen ``Config`` out, or a ``ConfigError`` listing every problem.

Each option is declared once below (``OPTIONS``) with its default, its validator and its section, so the
loader, the error messages and the example-config test all read the same table. Paths in the file are
relative to the folder of the config file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal

from alertd import schedule as schedule_mod
from alertd.errors import ConfigError, Problem, did_you_mean
from alertd.mailaddr import MailAddress
from alertd.models import MessageLanguage
from alertd.quiet import QuietHours
from alertd.tomlsource import KeyPath, TomlDocument
from alertd.tomlsource import load as load_toml
from alertd.validators import (
    Converter,
    boolean,
    choice,
    digest_schedule,
    duration,
    duration_at_least,
    fraction,
    http_url,
    int_range,
    listen_address,
    mail_address,
    network_list,
    nonempty,
    path,
    quiet_hours,
    string_list,
    timezone_name,
    type_name,
)

DEFAULT_USER_AGENT = "alertd/0.1 (+https://example.invalid/alertd; self-hosted news alerts)"
MIN_RETENTION = timedelta(days=90)
"""Items are remembered at least this long after they left their feed (RELIABILITY I5): a shorter memory would
let an item that left its feed and came back be alerted again."""

FirstPoll = Literal["seed", "alert"]
DeliveryMethod = Literal["maildir", "mbox", "smtp"]
SmtpSecurity = Literal["starttls", "tls", "none"]


def _retention(value: Any) -> timedelta:
    delta = duration(value)
    if delta < MIN_RETENTION:
        raise ValueError(
            f"must be at least {schedule_mod.format_duration(MIN_RETENTION)}, got {value!r}: a shorter memory "
            "would let an item that left its feed and came back be alerted again"
        )
    return delta


# --- the option table: each option once, with its validator and its default --------------------------


@dataclass(frozen=True, slots=True)
class Option:
    convert: Converter
    """Turns the TOML value into the config's, or raises ValueError saying why."""
    default: Any = None
    required: bool = False


_TOP = {
    "watchlist": Option(path, Path("watchlist.toml")),
    "templates_dir": Option(path),
    "feeds_file": Option(path, Path("feeds.toml")),
}
_STATE = {
    "path": Option(path, Path("var/alertd.sqlite3")),
    "retention": Option(_retention, MIN_RETENTION),
}
_POLL = {
    "interval": Option(duration, timedelta(minutes=15)),
    "concurrency": Option(int_range(1, 1000), 64),
    "timeout": Option(duration, timedelta(seconds=30)),
    "user_agent": Option(nonempty, DEFAULT_USER_AGENT),
    "first_poll": Option(choice("seed", "alert"), "seed"),
    "max_body_bytes": Option(int_range(1024, 1 << 30), 10 * 1024 * 1024),
    "jitter": Option(fraction, 0.1),
    "min_interval": Option(duration_at_least(timedelta(minutes=1)), timedelta(minutes=15)),
    "max_interval": Option(duration, timedelta(hours=24)),
    "allow_private": Option(network_list, ()),
}
_FEED = {
    "url": Option(http_url, required=True),
    "name": Option(nonempty),
    "interval": Option(duration),
    "tags": Option(string_list, ()),
    "paused": Option(boolean, False),
}
_DELIVERY = {
    "method": Option(choice("maildir", "mbox", "smtp"), "maildir"),
    "maildir": Option(path, Path("var/mail")),
    "mbox": Option(path, Path("var/alertd.mbox")),
    "from": Option(mail_address, "alertd@localhost"),
}
_SMTP = {
    "host": Option(nonempty, "localhost"),
    "port": Option(int_range(1, 65535), 587),
    "security": Option(choice("starttls", "tls", "none"), "starttls"),
    "username": Option(nonempty),
    "password_file": Option(path),
    "timeout": Option(duration, timedelta(seconds=120)),
}
_SUBSCRIBER = {
    "email": Option(mail_address, required=True),
    "name": Option(nonempty),
    "topics": Option(string_list),
    "schedule": Option(digest_schedule, required=True),
    "timezone": Option(timezone_name),
    "quiet_hours": Option(quiet_hours),
    "max_items_per_topic": Option(int_range(1, 1000), 20),
    "language": Option(choice("fr", "en"), "fr"),
}
_DIGEST = {
    "debounce": Option(duration, timedelta(minutes=2)),
    "feed_health_after": Option(duration_at_least(timedelta(minutes=1)), timedelta(hours=6)),
    "story_window": Option(duration_at_least(timedelta(minutes=1)), timedelta(hours=48)),
    "admin_contact": Option(lambda value: mail_address(value).text()),
}
_METRICS = {"listen": Option(listen_address)}

OPTIONS: Mapping[str, Mapping[str, Option]] = {
    "": _TOP,
    "state": _STATE,
    "poll": _POLL,
    "feed": _FEED,
    "delivery": _DELIVERY,
    "delivery.smtp": _SMTP,
    "subscriber": _SUBSCRIBER,
    "metrics": _METRICS,
    "digest": _DIGEST,
}
"""Every option by section (``""`` is the top level); a test checks the example config documents each. The
records below take their defaults from here: an option's default is written nowhere else."""


def default(section: str, key: str) -> Any:
    """The default of one option (what the records below, and code that needs it, use)."""
    return OPTIONS[section][key].default


# --- the records ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollConfig:
    interval: timedelta = default("poll", "interval")
    concurrency: int = default("poll", "concurrency")
    timeout: timedelta = default("poll", "timeout")
    user_agent: str = default("poll", "user_agent")
    first_poll: FirstPoll = default("poll", "first_poll")
    max_body_bytes: int = default("poll", "max_body_bytes")
    jitter: float = default("poll", "jitter")
    min_interval: timedelta = default("poll", "min_interval")
    max_interval: timedelta = default("poll", "max_interval")
    allow_private: tuple[IPv4Network | IPv6Network, ...] = default("poll", "allow_private")
    """Non-public networks a feed's host name may resolve to (an intranet feed); ``ALERTD_ALLOW_PRIVATE`` adds."""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    url: str
    name: str
    interval: timedelta | None = None
    tags: tuple[str, ...] = ()
    paused: bool = False
    """Kept (its state, its items) but not polled: ``alertd feeds pause`` / ``resume``."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = default("delivery.smtp", "host")
    port: int = default("delivery.smtp", "port")
    security: SmtpSecurity = default("delivery.smtp", "security")
    username: str | None = None
    password_file: Path | None = None
    timeout: timedelta = default("delivery.smtp", "timeout")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    method: DeliveryMethod = default("delivery", "method")
    maildir: Path = default("delivery", "maildir")
    mbox: Path = default("delivery", "mbox")
    sender: str = default("delivery", "from")
    smtp: SmtpConfig = SmtpConfig()


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    email: str
    name: str
    topics: tuple[str, ...] | None  # None: every topic of the watchlist
    schedule: schedule_mod.DigestSchedule
    timezone: str
    quiet_hours: QuietHours | None = None
    """Mail to this subscriber is held while the local time is in this window, and sent when it ends."""
    max_items_per_topic: int = default("subscriber", "max_items_per_topic")
    """Stories shown in full per topic; the rest are listed by title ("+N more")."""
    language: MessageLanguage = default("subscriber", "language")
    """Language of the digest's fixed strings and dates: "fr" or "en"."""


@dataclass(frozen=True, slots=True)
class DigestConfig:
    debounce: timedelta = default("digest", "debounce")
    """Matches of a priority topic found within this time of the first one share one alert email."""
    feed_health_after: timedelta = default("digest", "feed_health_after")
    """A feed failing for longer than this is reported in digests."""
    story_window: timedelta = default("digest", "story_window")
    """Copies of a story first seen this close are one story by their title (:mod:`alertd.stories`)."""
    admin_contact: str | None = None
    """Who readers write to to change or stop their mail (footer, ``List-Unsubscribe``); None: ``from``."""


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    watchlist: Path
    state_path: Path
    templates_dir: Path | None
    poll: PollConfig
    feeds: tuple[FeedConfig, ...]
    delivery: DeliveryConfig
    subscribers: tuple[SubscriberConfig, ...]
    feeds_file: Path | None = None
    """The tool-managed feeds file (``alertd feeds import``); its ``[[feed]]`` entries are in ``feeds``."""
    metrics_listen: str | None = None
    """``host:port`` of the Prometheus exporter; None: no exporter."""
    retention: timedelta = default("state", "retention")
    """How long items, matches and sent mail are kept after they stop mattering."""
    digest: DigestConfig = DigestConfig()
    """How digests and priority alerts are built (``[digest]``)."""


# --- loading ------------------------------------------------------------------------------------------


def load_config(
    path: Path, *, known_topics: frozenset[str] | None = None, environ: Mapping[str, str] = os.environ
) -> Config:
    """Load and validate the config file at ``path``; raise ``ConfigError`` listing every problem.

    ``known_topics``, when given, are the topic ids of the watchlist: subscribers may only name those.
    Relative state paths (database, Maildir, mbox) resolve against ``$STATE_DIRECTORY`` when systemd sets
    it, else against the config file's folder; other relative paths always against the config's folder.
    """
    return _Loader(load_toml(path), state_base(path, environ)).build(known_topics)


def state_base(config_path: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where relative state paths resolve: ``$STATE_DIRECTORY`` (its first entry) when systemd sets it, else the
    config file's folder."""
    state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state_dir) if state_dir else config_path.parent


def system_timezone(environ: Mapping[str, str] = os.environ) -> str:
    """The system's IANA time zone name (``$TZ``, then /etc/timezone, then /etc/localtime), else UTC."""
    from zoneinfo import ZoneInfo

    candidates = [environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            continue
        return name
    return "UTC"


class _Loader:
    """Reads one document into a ``Config``, collecting problems instead of stopping at the first."""

    def __init__(self, doc: TomlDocument, state_dir: Path) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.base = doc.path.parent
        self.state_base = state_dir

    def problem(self, key: KeyPath, message: str) -> None:
        line, col = self.doc.locate(key)
        dotted = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in key).replace(".[", "[")
        self.problems.append(Problem(self.doc.path, line, col, dotted, message))

    def section(
        self, raw: Any, where: KeyPath, options: Mapping[str, Option], nested: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Convert one table: unknown keys, wrong types and missing values become problems."""
        if not isinstance(raw, dict):
            self.problem(where, f"expected a table, got {type_name(raw)}")
            raw = {}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in nested:
                continue
            option = options.get(key)
            if option is None:
                self.problem((*where, key), f"unknown key {key!r}{did_you_mean(key, options)}")
                continue
            try:
                values[key] = option.convert(value)
            except ValueError as exc:
                self.problem((*where, key), str(exc))
                values[key] = option.default  # the load fails anyway; the rest of it still reads a value
        for key, option in options.items():
            if key not in raw and key not in values:
                if option.required:
                    self.problem(where, f"missing required key {key!r}")
                else:
                    values[key] = option.default
        return values

    def array(self, name: str) -> list[tuple[KeyPath, Any]]:
        raw = self.doc.data.get(name, [])
        if not isinstance(raw, list):
            self.problem((name,), f"expected [[{name}]] tables, got {type_name(raw)}")
            return []
        return [((name, i), entry) for i, entry in enumerate(raw)]

    def build(self, known_topics: frozenset[str] | None) -> Config:
        data = self.doc.data
        top = self.section(
            data, (), _TOP, nested=("state", "poll", "feed", "delivery", "subscriber", "metrics", "digest")
        )
        state = self.section(data.get("state", {}), ("state",), _STATE)
        poll = self.section(data.get("poll", {}), ("poll",), _POLL)
        if "min_interval" in poll and "max_interval" in poll and poll["min_interval"] > poll["max_interval"]:
            self.problem(("poll", "max_interval"), "must not be shorter than min_interval")
        seen: dict[str, tuple[Path, int]] = {}
        feeds = self._feeds(poll, seen)
        feeds_file = self.base / top["feeds_file"] if top.get("feeds_file") else None
        if feeds_file is not None and feeds_file.exists():
            feeds += self._included_feeds(feeds_file, poll, seen)
        delivery = self._delivery()
        subscribers = self._subscribers(known_topics)
        metrics = self.section(data.get("metrics", {}), ("metrics",), _METRICS)
        digest = self.section(data.get("digest", {}), ("digest",), _DIGEST)
        if self.problems:
            raise ConfigError(self.problems)
        templates = top.get("templates_dir")
        return Config(
            path=self.doc.path,
            watchlist=self.base / top["watchlist"],
            state_path=self.state_base / state["path"],
            templates_dir=self.base / templates if templates else None,
            poll=PollConfig(**poll),
            feeds=feeds,
            delivery=delivery,
            subscribers=subscribers,
            feeds_file=feeds_file,
            metrics_listen=metrics.get("listen"),
            retention=state["retention"],
            digest=DigestConfig(**digest),
        )

    def _feeds(self, poll: Mapping[str, Any], seen: dict[str, tuple[Path, int]]) -> tuple[FeedConfig, ...]:
        """The ``[[feed]]`` tables of this document; ``seen`` maps URLs already taken to where they are."""
        feeds: list[FeedConfig] = []
        for where, raw in self.array("feed"):
            values = self.section(raw, where, _FEED)
            if values.get("url") is None:
                continue
            url = values["url"]
            if url in seen:
                path, index = seen[url]
                elsewhere = "" if path == self.doc.path else f"{path.name} "
                self.problem((*where, "url"), f"duplicate feed URL (first at {elsewhere}feed[{index}])")
                continue
            seen[url] = (self.doc.path, int(where[1]))
            feeds.append(
                FeedConfig(
                    url=url,
                    name=values["name"] or url,
                    interval=values["interval"],
                    tags=values["tags"],
                    paused=values["paused"],
                )
            )
        return tuple(feeds)

    def _included_feeds(
        self, path: Path, poll: Mapping[str, Any], seen: dict[str, tuple[Path, int]]
    ) -> tuple[FeedConfig, ...]:
        """The feeds of the tool-managed feeds file, validated like ours, problems located in that file."""
        try:
            included = _Loader(load_toml(path), self.state_base)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return ()
        included.section(included.doc.data, (), {}, nested=("feed",))
        feeds = included._feeds(poll, seen)
        self.problems.extend(included.problems)
        return feeds

    def _delivery(self) -> DeliveryConfig:
        raw = self.doc.data.get("delivery", {})
        values = self.section(raw, ("delivery",), _DELIVERY, nested=("smtp",))
        smtp_raw = raw.get("smtp", {}) if isinstance(raw, dict) else {}
        smtp = self.section(smtp_raw, ("delivery", "smtp"), _SMTP)
        if smtp.get("security") == "none" and smtp.get("username") and smtp.get("host") not in _LOOPBACK:
            self.problem(
                ("delivery", "smtp", "security"),
                "security = 'none' would send the password in clear: use 'starttls' or 'tls', "
                "or a server on localhost",
            )
        if isinstance(smtp_raw, dict) and "password" in smtp_raw:
            self.problems[-1:] = [p for p in self.problems[-1:] if not p.key.endswith("smtp.password")]
            self.problem(
                ("delivery", "smtp", "password"),
                "never put the password in the config: use password_file, $ALERTD_SMTP_PASSWORD "
                "or the systemd credential 'smtp_password'",
            )
        if values.get("method") == "smtp" and "host" not in smtp_raw:
            self.problem(("delivery", "method"), "method = 'smtp' needs [delivery.smtp] host")
        return DeliveryConfig(
            method=values["method"],
            maildir=self.state_base / values["maildir"],
            mbox=self.state_base / values["mbox"],
            sender=_header_form(values["from"]),
            smtp=SmtpConfig(
                host=smtp["host"],
                port=smtp["port"],
                security=smtp["security"],
                username=smtp["username"],
                password_file=self.base / smtp["password_file"] if smtp["password_file"] else None,
                timeout=smtp["timeout"],
            ),
        )

    def _subscribers(self, known_topics: frozenset[str] | None) -> tuple[SubscriberConfig, ...]:
        subscribers: list[SubscriberConfig] = []
        default_tz = system_timezone()
        for where, raw in self.array("subscriber"):
            values = self.section(raw, where, _SUBSCRIBER)
            topics = values.get("topics")
            if topics is not None and known_topics is not None:
                for i, topic in enumerate(topics):
                    if topic not in known_topics:
                        self.problem(
                            (*where, "topics", i),
                            f"topic {topic!r} is not defined in the watchlist"
                            f"{did_you_mean(topic, known_topics)}",
                        )
            if values.get("email") is None or values.get("schedule") is None:
                continue
            subscribers.append(
                SubscriberConfig(
                    email=values["email"].addr_spec,
                    name=values["name"]
                    or values["email"].display_name
                    or values["email"].addr_spec.split("@")[0],
                    topics=topics,
                    schedule=values["schedule"],
                    timezone=values["timezone"] or default_tz,
                    quiet_hours=values["quiet_hours"],
                    max_items_per_topic=values["max_items_per_topic"],
                    language=values["language"],
                )
            )
        return tuple(subscribers)


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _header_form(address: MailAddress | str) -> str:
    """The sender as written (a default from the option table is plain text, already valid)."""
    return address if isinstance(address, str) else address.text()
