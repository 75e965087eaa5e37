"""The ``alertd`` command: parse arguments, call the pipeline or the service, print, exit with a meaning.

Exit status: 0 ok, 1 runtime failure (a feed or a delivery failed), 2 usage, 78 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alertd import __version__, schedule
from alertd.config import Config, find_config
from alertd.errors import AlertdError, ConfigError
from alertd.match import format_explanation, match_item
from alertd.models import Match
from alertd.text import html_to_text
from alertd.watchlist import Watchlist

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78

log = logging.getLogger("alertd")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_format, os.environ)
    try:
        result: int = args.handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except AlertdError as exc:
        print(f"alertd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return result


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd", description="Watch business news feeds and email explained digests."
    )
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        help="config file (default: $ALERTD_CONFIG, ./alertd.toml, ~/.config/alertd/alertd.toml, "
        "/etc/alertd/alertd.toml)",
    )
    common.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default: info"
    )
    common.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one JSON object per line"
    )
    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_USAGE

    parser.set_defaults(handler=usage, log_level="info", log_format="text")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--once", action="store_true", help="poll every feed once, deliver what is due, exit")
    run.set_defaults(handler=cmd_run)

    flush = commands.add_parser("flush", parents=[common], help="build and deliver every pending digest now")
    flush.set_defaults(handler=cmd_flush)

    check = commands.add_parser("check-config", parents=[common], help="validate the config and watchlist")
    check.set_defaults(handler=cmd_check_config)

    match = commands.add_parser("match", parents=[common], help="run the watchlist over JSON lines or a text")
    match.add_argument("--input", type=Path, help="JSON lines file (default: standard input)")
    match.add_argument("--text", help="test one headline (and no summary) instead of reading JSON lines")
    match.add_argument("--explain", action="store_true", help="print a readable explanation per item")
    match.set_defaults(handler=cmd_match)

    replay = commands.add_parser(
        "replay", parents=[common], help="show what the current watchlist would have matched in stored items"
    )
    replay.add_argument("--since", default="7d", help="how far back, e.g. 7d, 12h (default: 7d)")
    replay.add_argument("--topic", help="only this topic id")
    replay.add_argument(
        "--deliver", action="store_true", help="also queue these matches for the subscribers' next digests"
    )
    replay.set_defaults(handler=cmd_replay)

    status = commands.add_parser("status", parents=[common], help="what the daemon is doing (works when stopped)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    init = commands.add_parser("init", help="write a commented example config and watchlist into DIR")
    init.add_argument("directory", type=Path)
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(handler=cmd_init)
    return parser


class _TextFormatter(logging.Formatter):
    """One line per event; multi-line messages (config errors) are indented under their first line."""

    def __init__(self, timestamps: bool) -> None:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps else "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n    ")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(level: str, log_format: str, environ: Mapping[str, str]) -> None:
    """One line per event on stdout; journald adds timestamps itself, so we don't when it is listening."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(timestamps="JOURNAL_STREAM" not in environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "apscheduler", "aiosmtplib", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config_path(args: argparse.Namespace) -> Path:
    return find_config(args.config, os.environ)


def _load(args: argparse.Namespace) -> tuple[Config, Watchlist]:
    from alertd.service import load_all

    return load_all(_config_path(args))


def _now() -> datetime:
    return datetime.now(UTC)


# --- commands ----------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from alertd.service import Daemon, open_runtime, run_once

    config, watchlist = _load(args)
    for warning in watchlist.warnings:
        log.warning("%s", warning)
    if args.once:

        async def once() -> int:
            async with open_runtime(config, watchlist, dict(os.environ)) as rt:
                return await run_once(rt, _now)

        return asyncio.run(once())
    return asyncio.run(Daemon(_config_path(args), dict(os.environ)).run(config, watchlist))


def cmd_flush(args: argparse.Namespace) -> int:
    from alertd import pipeline
    from alertd.service import open_runtime

    config, watchlist = _load(args)

    async def flush() -> int:
        async with open_runtime(config, watchlist, dict(os.environ)) as rt:
            pipeline.register_subscribers(rt, _now())
            queued = pipeline.flush_digests(rt, _now(), force=True)
            attempts = await pipeline.drain_outbox(rt, _now())
            for attempt in attempts:
                print(f"{attempt.subscriber}: {attempt.status}" + (f" ({attempt.error})" if attempt.error else ""))
            if not queued and not attempts:
                print("nothing pending")
            return EXIT_OK if all(a.status == "sent" for a in attempts) else EXIT_FAILURE

    return asyncio.run(flush())


def cmd_check_config(args: argparse.Namespace) -> int:
    config, watchlist = _load(args)
    for warning in watchlist.warnings:
        print(warning, file=sys.stderr)
    delivery = config.delivery
    where = {
        "maildir": str(delivery.maildir),
        "mbox": str(delivery.mbox),
        "smtp": f"{delivery.smtp.host}:{delivery.smtp.port} ({delivery.smtp.security})",
    }[delivery.method]
    print(f"config:      {config.path}")
    print(f"watchlist:   {config.watchlist} ({len(watchlist.topics)} topics: {', '.join(t.id for t in watchlist.topics)})")
    print(f"state:       {config.state_path}")
    print(f"feeds:       {len(config.feeds)} (every {schedule.format_duration(config.poll.interval)} by default)")
    print(f"subscribers: {len(config.subscribers)}")
    for sub in config.subscribers:
        topics = ", ".join(sub.topics) if sub.topics is not None else "all topics"
        print(f"  - {sub.email}: {sub.schedule.text} ({sub.timezone}); {topics}")
    print(f"delivery:    {delivery.method} → {where}")
    print("OK" if not watchlist.warnings else f"OK with {len(watchlist.warnings)} warnings")
    return EXIT_OK


def cmd_match(args: argparse.Namespace) -> int:
    _, watchlist = _load(args)
    if args.text is not None:
        matches = match_item(watchlist, args.text, "")
        print(format_explanation(args.text, "", matches, watchlist))
        return EXIT_OK
    source: TextIO = args.input.open(encoding="utf-8") if args.input else sys.stdin
    with source:
        for number, record in _json_lines(source):
            if record is None:
                print(f"alertd: line {number}: not a JSON object with an 'id'", file=sys.stderr)
                return EXIT_USAGE
            title = _text_field(record, "title")
            summary = html_to_text(_text_field(record, "summary"))
            matches = match_item(
                watchlist, title, summary, feed_name=_text_field(record, "feed"), link=_text_field(record, "link")
            )
            if args.explain:
                print(f"# {record['id']}")
                print(format_explanation(title, summary, matches, watchlist))
                print()
            else:
                print(json.dumps({"id": record["id"], "topics": [_match_json(m) for m in matches]}, ensure_ascii=False))
    return EXIT_OK


def _json_lines(source: TextIO) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            yield number, None
            continue
        yield number, record if isinstance(record, dict) and "id" in record else None


def _text_field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    return value if isinstance(value, str) else ""


def _match_json(match: Match) -> dict[str, Any]:
    return {
        "id": match.topic_id,
        "terms": list(match.terms),
        "score": match.score,
        "spans": [{"field": s.field, "start": s.start, "end": s.end, "term": s.term} for s in match.spans],
    }


def cmd_replay(args: argparse.Namespace) -> int:
    from alertd.store import Store

    config, watchlist = _load(args)
    try:
        window = schedule.parse_duration(args.since)
    except ValueError as exc:
        print(f"alertd: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.topic and watchlist.topic(args.topic) is None:
        print(f"alertd: --topic: no topic {args.topic!r} in {config.watchlist}", file=sys.stderr)
        return EXIT_USAGE
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: run alertd first")
        return EXIT_OK
    counts: dict[str, int] = {}
    total = 0
    found: list[tuple[str, Match]] = []
    with Store.open(config.state_path, readonly=not args.deliver) as store:
        for item, first_seen in store.items_since(_now() - window):
            total += 1
            matches = [
                m
                for m in match_item(watchlist, item.title, item.summary_text, feed_name=item.feed_name, link=item.link or "")
                if not args.topic or m.topic_id == args.topic
            ]
            found.extend((item.key, m) for m in matches)
            for m in matches:
                counts[m.topic_id] = counts.get(m.topic_id, 0) + 1
                local = first_seen.astimezone().strftime("%Y-%m-%d %H:%M")
                print(f"{local}  [{m.topic_id}]  {item.title}  ({item.feed_name})")
                print(f"    why: {', '.join(m.terms)}" + (f"  → {item.link}" if item.link else ""))
        if args.deliver:
            added = store.add_matches(found, _now())
    summary = ", ".join(f"{topic}: {n}" for topic, n in counts.items()) or "no matches"
    print(f"\n{total} stored items since {args.since} ago; {summary}")
    if args.deliver:
        print(f"{added} new matches queued for the subscribers' next digests (already delivered ones are skipped)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from alertd.config import load_config
    from alertd.status import collect_status, format_status
    from alertd.store import Store

    config = load_config(_config_path(args))
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: alertd has never run with this config")
        return EXIT_OK
    now = _now()
    with Store.open(config.state_path, readonly=True) as store:
        status = collect_status(config, store, now)
    if args.json:
        print(json.dumps(status.as_json(), ensure_ascii=False, indent=2))
    else:
        print(format_status(status, now))
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    source = example_config_dir()
    target: Path = args.directory
    target.mkdir(parents=True, exist_ok=True)
    for name in ("alertd.toml", "watchlist.toml"):
        destination = target / name
        if destination.exists() and not args.force:
            print(f"alertd: {destination} exists (use --force to overwrite)", file=sys.stderr)
            return EXIT_FAILURE
        shutil.copyfile(source / name, destination)
        print(f"wrote {destination}")
    print(f"next: edit {target / 'alertd.toml'}, then: alertd check-config -c {target / 'alertd.toml'}")
    return EXIT_OK


def example_config_dir() -> Path:
    """The shipped example config: inside the installed wheel, or the repository's ``config/``."""
    packaged = Path(__file__).parent / "example_config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "config"
