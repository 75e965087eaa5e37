"""``alertd feeds``: each feed's condition; ``feeds import`` (OPML into the feeds file) and ``feeds export``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from alertd import health
from alertd.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_path, local
from alertd.errors import ConfigError
from alertd.records import FeedState


def cmd_feeds(args: argparse.Namespace) -> int:
    """Each configured feed's health: last success, last error and its class, failures, next poll, moves."""
    from alertd.config import load_config
    from alertd.store import Store

    config = load_config(config_path(args))
    states: dict[str, FeedState] = {}
    if config.state_path.exists():
        with Store.open(config.state_path, readonly=True) as store:
            states = {state.url: state for state in store.feeds()}
    rows = [_feed_row(feed.url, feed.name, feed.tags, states.get(feed.url)) for feed in config.feeds]
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
                "never (gone)" if row["gone"] else _local_iso(row["next_poll_at"]),
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


def _feed_row(url: str, name: str, tags: Sequence[str], state: FeedState | None) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "url": url,
        "name": name,
        "tags": list(tags),
        "status": health.judge(state).condition,
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
    from alertd import opml
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
    opml.append_feeds(target, added)
    try:
        load_config(path)
    except ConfigError:  # never leave a config alertd would refuse
        if previous is None:
            target.unlink()
        else:
            opml.replace_file(target, previous)
        raise
    print(f"imported {len(added)} feeds into {target} ({len(found) - len(added)} skipped)")
    return EXIT_OK


def cmd_feeds_export(args: argparse.Namespace) -> int:
    """Every configured feed (config and feeds_file) as OPML on standard output."""
    from alertd import opml
    from alertd.config import load_config

    config = load_config(config_path(args))
    sys.stdout.write(opml.write_opml(config.feeds))
    return EXIT_OK
