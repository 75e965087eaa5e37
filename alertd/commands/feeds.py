"""``alertd feeds``: each feed's condition; ``feeds import`` (OPML into the feeds file), ``feeds export``;
``feeds add``, ``remove``, ``pause``, ``resume`` (the feeds file, :mod:`alertd.feedsfile`) and ``feeds poll``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from alertd import health
from alertd.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_path, load, local, now
from alertd.config import Config, FeedConfig
from alertd.errors import ConfigError, did_you_mean
from alertd.models import FetchResult
from alertd.records import FeedState
from alertd.watchlist import Watchlist


def cmd_feeds(args: argparse.Namespace) -> int:
    """Each configured feed's health: last success, last error and its class, failures, next poll, moves."""
    from alertd.config import load_config
    from alertd.store import Store

    config = load_config(config_path(args))
    states: dict[str, FeedState] = {}
    if config.state_path.exists():
        with Store.open(config.state_path, readonly=True) as store:
            states = {state.url: state for state in store.feeds()}
    rows = [_feed_row(feed, states.get(feed.url)) for feed in config.feeds]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    table = [("STATUS", "NAME", "LAST OK", "FAILS", "LAST ERROR", "NEXT POLL", "URL")]
    for row in rows:
        url = row["url"] + (f" -> {row['effective_url']}" if row["effective_url"] else "")
        table.append(
            (
                row["status"],
                _clip(row["name"], 32),
                _local_iso(row["last_success_at"]),
                str(row["consecutive_failures"]),
                row["last_error_class"] or "",
                "never (gone)"
                if row["gone"]
                else "paused"
                if row["paused"]
                else _local_iso(row["next_poll_at"]),
                url,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]))
    gone = [row for row in rows if row["gone"]]
    for row in gone:
        print(f"\nGONE: {row['name']} ({row['url']}) answered 410 Gone: it is no longer polled; remove it.")
    return EXIT_OK


def _feed_row(feed: FeedConfig, state: FeedState | None) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "url": feed.url,
        "name": feed.name,
        "tags": list(feed.tags),
        "status": "paused" if feed.paused else health.judge(state).condition,
        "paused": feed.paused,
        "effective_url": state.effective_url if state else None,
        "moved_at": iso(state.moved_at) if state else None,
        "last_success_at": iso(state.last_success_at) if state else None,
        "last_error_at": iso(state.last_error_at) if state else None,
        "last_error_class": state.last_error_class if state else None,
        "last_error": state.last_error if state else None,
        "consecutive_failures": state.consecutive_failures if state else 0,
        "next_poll_at": iso(state.next_poll_at) if state else None,
        "gone": bool(state and state.gone),
        "redirect_candidate": state.redirect_candidate if state else None,
        "redirect_count": state.redirect_count if state else 0,
    }


def _local_iso(text: str | None) -> str:
    return local(datetime.fromisoformat(text)) if text else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_feeds_import(args: argparse.Namespace) -> int:
    """Append an OPML file's feeds to the config's feeds_file; skip (and say) duplicates and non-http URLs."""
    from alertd import feedsfile, opml
    from alertd.config import load_config

    path = config_path(args)
    config = load_config(path)
    target = config.feeds_file
    if target is None:
        print("alertd: the config sets no feeds_file to import into", file=sys.stderr)
        return EXIT_USAGE
    try:
        found = opml.read_opml(args.file.read_bytes())
    except OSError as exc:
        print(f"alertd: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except opml.OpmlError as exc:
        print(f"alertd: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not found:
        print(f"alertd: {args.file}: no feed in it (no <outline> with an xmlUrl)", file=sys.stderr)
        return EXIT_FAILURE
    taken = {feed.url for feed in config.feeds}
    added: list[opml.OpmlFeed] = []
    for feed in found:
        if not opml.is_feed_url(feed.url):
            print(f"skipped (not an http(s) URL): {feed.url}")
        elif feed.url in taken:
            print(f"skipped (already configured): {feed.url}")
        else:
            taken.add(feed.url)
            added.append(feed)
    if not added:
        print(f"nothing to import: {len(found)} feeds in {args.file}, none new")
        return EXIT_OK
    previous = target.read_text(encoding="utf-8") if target.exists() else None
    text = previous
    for feed in added:
        text = feedsfile.add(text, feed)
    assert text is not None
    _write_checked(path, target, previous, text)
    print(f"imported {len(added)} feeds into {target} ({len(found) - len(added)} skipped)")
    return EXIT_OK


def cmd_feeds_export(args: argparse.Namespace) -> int:
    """Every configured feed (config and feeds_file) as OPML on standard output."""
    from alertd import opml
    from alertd.config import load_config

    config = load_config(config_path(args))
    sys.stdout.write(opml.write_opml(config.feeds))
    return EXIT_OK


# --- managing feeds: add, remove, pause, resume, poll now ---------------------------------------------------


def cmd_feeds_add(args: argparse.Namespace) -> int:
    """Add a feed to the feeds file; with ``--check``, fetch it once first to prove it is a feed and take its
    title for a name."""
    from alertd import feedsfile, opml
    from alertd.config import load_config
    from alertd.validators import duration, http_url

    path = config_path(args)
    config = load_config(path)
    if config.feeds_file is None:
        print("alertd: the config sets no feeds_file for alertd to manage", file=sys.stderr)
        return EXIT_USAGE
    try:
        url = http_url(args.url)
        if args.interval is not None:
            duration(args.interval)  # refused here rather than by the reload that reads it
    except ValueError as exc:
        print(f"alertd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if any(feed.url == url for feed in config.feeds):
        print(f"alertd: {url} is already configured", file=sys.stderr)
        return EXIT_FAILURE
    name = args.name
    if args.check:
        checked = _check_feed(config, url)
        if isinstance(checked, int):
            return checked
        name = name or checked
    tags = tuple(tag.strip() for tag in (args.tags or "").split(",") if tag.strip())
    feed = opml.OpmlFeed(url, name or (urlsplit(url).hostname or url), tags)
    old = config.feeds_file.read_text(encoding="utf-8") if config.feeds_file.exists() else None
    _write_checked(path, config.feeds_file, old, feedsfile.add(old, feed, interval=args.interval))
    print(f"added {feed.name} ({url}) to {config.feeds_file}; a running daemon polls it within seconds")
    return EXIT_OK


def cmd_feeds_remove(args: argparse.Namespace) -> int:
    """Remove a feed of the feeds file (its state stays: if it comes back, what it had is not news)."""
    from alertd import feedsfile

    return _edit_feed(args, lambda text, url: feedsfile.remove(text, url), "removed")


def cmd_feeds_pause(args: argparse.Namespace) -> int:
    """Keep a feed but stop polling it, until ``feeds resume``."""
    from alertd import feedsfile

    return _edit_feed(args, lambda text, url: feedsfile.set_paused(text, url, True), "paused")


def cmd_feeds_resume(args: argparse.Namespace) -> int:
    from alertd import feedsfile

    return _edit_feed(args, lambda text, url: feedsfile.set_paused(text, url, False), "resumed")


def cmd_feeds_poll(args: argparse.Namespace) -> int:
    """Poll feeds now: asked of the running daemon (never a second poller beside it), else in this process
    under the state lock. Prints each poll's outcome; 1 if one failed."""
    from alertd.statelock import holder

    config, watchlist = load(args)
    feeds = _named_feeds(config, args.feeds)
    if isinstance(feeds, int):
        return feeds
    if not feeds:
        print("alertd: nothing to poll: no feed is configured, or every feed is paused", file=sys.stderr)
        return EXIT_FAILURE
    try:
        found = holder(config.state_path) if config.state_path.exists() else None
    except PermissionError:
        print(
            f"alertd: {config.state_path}: this user may not read its lock (another user's alertd?)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if found is not None and found.purpose == "daemon":
        return _ask_the_daemon(config, feeds)
    return asyncio.run(_poll_here(config, watchlist, feeds))


def _edit_feed(args: argparse.Namespace, edit: Callable[[str, str], str | None], done: str) -> int:
    from alertd import feedsfile
    from alertd.config import load_config

    path = config_path(args)
    config = load_config(path)
    found = _named_feeds(config, [args.feed])
    if isinstance(found, int):
        return found
    (feed,) = found
    target = config.feeds_file
    text = target.read_text(encoding="utf-8") if target is not None and target.exists() else ""
    if target is None or feed.url not in feedsfile.feed_urls(text):
        print(
            f"alertd: {feed.name} is configured in {config.path}, not in the feeds file: edit it there",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    edited = edit(text, feed.url)
    assert edited is not None
    _write_checked(path, target, text, edited)
    print(f"{done} {feed.name} ({feed.url}) in {target}; a running daemon applies it within seconds")
    return EXIT_OK


def _named_feeds(config: Config, keys: Sequence[str]) -> list[FeedConfig] | int:
    """The configured feeds named by URL or name (case aside); every active one for no key."""
    if not keys:
        return [feed for feed in config.feeds if not feed.paused]
    chosen = []
    for key in keys:
        feed = next(
            (f for f in config.feeds if key in (f.url, f.name) or f.name.casefold() == key.casefold()), None
        )
        if feed is None:
            hint = did_you_mean(key, [f.name for f in config.feeds])
            print(f"alertd: no feed {key!r} in the config{hint}", file=sys.stderr)
            return EXIT_USAGE
        chosen.append(feed)
    return chosen


def _write_checked(config_file: Path, target: Path, old: str | None, new: str) -> None:
    """Write the feeds file (atomically), then load the whole config: one alertd would refuse is never left."""
    from alertd import opml
    from alertd.config import load_config

    opml.replace_file(target, new)
    try:
        load_config(config_file)
    except ConfigError:
        if old is None:
            target.unlink()
        else:
            opml.replace_file(target, old)
        raise


def _check_feed(config: Config, url: str) -> str | int:
    """Fetch ``url`` once as the daemon would (same guard and limits) and parse it: its title, or an exit
    status after saying why it is not a feed."""
    from alertd.errors import ParseError
    from alertd.fetch import fetch_feed, make_client
    from alertd.models import FetchStatus
    from alertd.parse import parse_feed
    from alertd.runtime import fetch_policy

    async def fetch() -> FetchResult:
        policy = fetch_policy(config)
        async with make_client(policy) as client:
            return await fetch_feed(client, url, etag=None, last_modified=None, policy=policy)

    result = asyncio.run(fetch())
    if result.status is not FetchStatus.OK:
        print(f"alertd: {url}: {result.error_class or result.status.value}: {result.error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        parsed = parse_feed(result.body, result.content_type, result.base_url)
    except ParseError as exc:
        print(f"alertd: {url} is not a feed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"checked: {url} is a feed of {len(parsed.entries)} items ({parsed.title or 'no title'})")
    return parsed.title or ""


def _ask_the_daemon(config: Config, feeds: Sequence[FeedConfig]) -> int:
    from alertd.store import Store

    with Store.open(config.state_path) as store:
        asked = store.request_polls([feed.url for feed in feeds], now())
        give_up = time.monotonic() + config.poll.timeout.total_seconds() * len(feeds) + 30
        answered: dict[int, tuple[str, bool]] = {}
        while len(answered) < len(asked) and time.monotonic() < give_up:
            time.sleep(0.2)
            for request_id, (outcome, failed) in store.poll_outcomes(asked).items():
                if request_id not in answered:
                    answered[request_id] = (outcome, failed)
                    print(outcome, flush=True)
    if len(answered) < len(asked):
        print("alertd: the daemon did not answer in time (`alertd status`)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_FAILURE if any(failed for _, failed in answered.values()) else EXIT_OK


async def _poll_here(config: Config, watchlist: Watchlist, feeds: Sequence[FeedConfig]) -> int:
    from alertd import pipeline
    from alertd.runtime import open_runtime
    from alertd.statelock import StateLock, StateLocked

    try:
        lock = StateLock.acquire(config.state_path, "feeds poll")
    except StateLocked as exc:
        print(f"alertd: {exc}: one alertd polls a state at a time", file=sys.stderr)
        return EXIT_FAILURE
    with lock:
        async with open_runtime(config, watchlist, dict(os.environ), purpose="feeds poll") as rt:
            pipeline.register_subscribers(rt, now())
            reports = [await pipeline.poll_feed(rt, feed, now()) for feed in feeds]
    for report in reports:
        print(report.outcome())
    if any(report.matches for report in reports):
        print("matches recorded: they go out with the daemon, or `alertd flush`")
    return EXIT_FAILURE if any(report.failed for report in reports) else EXIT_OK
