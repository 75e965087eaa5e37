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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from alertd import __version__, schedule
from alertd.config import Config, SubscriberConfig, find_config
from alertd.errors import AlertdError, ConfigError
from alertd.match import format_explanation, match_item
from alertd.models import Match
from alertd.text import html_to_text
from alertd.watchlist import Watchlist

UTC = timezone.utc  # datetime.UTC is Python 3.11+

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

    status = commands.add_parser(
        "status", parents=[common], help="what the daemon is doing (works when stopped)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    preview = commands.add_parser(
        "preview", parents=[common], help="render the digest a subscriber would get now, without sending it"
    )
    preview.add_argument("--subscriber", metavar="EMAIL", help="whose digest (default: the first subscriber)")
    preview.add_argument(
        "--since", metavar="DURATION", help="every match stored in this window (e.g. 1d), sent or not"
    )
    preview.add_argument(
        "--output", "-o", type=Path, required=True, metavar="FILE", help="FILE.html (HTML part) or FILE.eml"
    )
    preview.set_defaults(handler=cmd_preview)

    test_email = commands.add_parser(
        "test-email", parents=[common], help="send a sample digest through the configured delivery"
    )
    test_email.add_argument("--to", required=True, metavar="EMAIL", help="recipient of the sample")
    test_email.add_argument("--language", choices=["fr", "en"], help="default: that subscriber's, else fr")
    test_email.set_defaults(handler=cmd_test_email)

    outbox = commands.add_parser(
        "outbox", parents=[common], help="list pending and failed messages; `outbox retry ID` requeues one"
    )
    outbox.add_argument("action", nargs="?", choices=["list", "retry"], default="list", help="default: list")
    outbox.add_argument(
        "ids", nargs="*", type=int, metavar="ID", help="retry: messages to requeue (also lifts a pause)"
    )
    outbox.set_defaults(handler=cmd_outbox)

    feeds = commands.add_parser(
        "feeds",
        parents=[common],
        help="each feed's health (`feeds --json`); `feeds import FILE.opml`; `feeds export` (OPML)",
    )
    feeds.add_argument("--json", action="store_true", help="machine-readable output")
    feeds.set_defaults(handler=cmd_feeds)
    feeds_commands = feeds.add_subparsers(title="feeds commands", metavar="ACTION")
    feeds_import = feeds_commands.add_parser(
        "import", parents=[common], help="add the feeds of an OPML file to the config's feeds_file"
    )
    feeds_import.add_argument("file", type=Path, metavar="FILE.opml")
    feeds_import.set_defaults(handler=cmd_feeds_import)
    feeds_export = feeds_commands.add_parser("export", parents=[common], help="write every feed as OPML")
    feeds_export.set_defaults(handler=cmd_feeds_export)

    init = commands.add_parser("init", help="write a commented example config and watchlist into DIR")
    init.add_argument("directory", type=Path)
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(handler=cmd_init)
    return parser


class _TextFormatter(logging.Formatter):
    """One line per event; multi-line messages (config errors) are indented under their first line."""

    def __init__(self, timestamps: bool) -> None:
        fmt = (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if timestamps
            else "%(levelname)s %(name)s: %(message)s"
        )
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
                print(
                    f"{attempt.subscriber}: {attempt.status}"
                    + (f" ({attempt.error})" if attempt.error else "")
                )
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
    print(
        f"watchlist:   {config.watchlist} ({len(watchlist.topics)} topics: {', '.join(t.id for t in watchlist.topics)})"
    )
    print(f"state:       {config.state_path}")
    print(
        f"feeds:       {len(config.feeds)} (every {schedule.format_duration(config.poll.interval)} by default)"
    )
    print(f"subscribers: {len(config.subscribers)}")
    for sub in config.subscribers:
        topics = ", ".join(sub.topics) if sub.topics is not None else "all topics"
        quiet = f", quiet {sub.quiet_hours.text}" if sub.quiet_hours else ""
        print(f"  - {sub.email}: {sub.schedule.text} ({sub.timezone}{quiet}, {sub.language}); {topics}")
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
                watchlist,
                title,
                summary,
                feed_name=_text_field(record, "feed"),
                link=_text_field(record, "link"),
            )
            if args.explain:
                print(f"# {record['id']}")
                print(format_explanation(title, summary, matches, watchlist))
                print()
            else:
                print(
                    json.dumps(
                        {"id": record["id"], "topics": [_match_json(m) for m in matches]}, ensure_ascii=False
                    )
                )
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
                for m in match_item(
                    watchlist, item.title, item.summary_text, feed_name=item.feed_name, link=item.link or ""
                )
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
        print(
            f"{added} new matches queued for the subscribers' next digests (already delivered ones are skipped)"
        )
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


# --- digests: preview, test-email, outbox --------------------------------------------------------------------


def _subscriber(config: Config, email: str | None) -> SubscriberConfig | None:
    if email is None:
        return config.subscribers[0] if config.subscribers else None
    return next((s for s in config.subscribers if s.email.casefold() == email.casefold()), None)


def cmd_preview(args: argparse.Namespace) -> int:
    """Render what a subscriber would get now, into a file; reads the state database only."""
    from alertd import pipeline
    from alertd.render import load_templates
    from alertd.store import Store

    config, watchlist = _load(args)
    output: Path = args.output
    if output.suffix.lower() not in (".html", ".eml"):
        print(f"alertd: --output: {output} must end in .html or .eml", file=sys.stderr)
        return EXIT_USAGE
    subscriber = _subscriber(config, args.subscriber)
    if subscriber is None:
        known = ", ".join(s.email for s in config.subscribers) or "none configured"
        print(f"alertd: --subscriber: no subscriber {args.subscriber!r} (known: {known})", file=sys.stderr)
        return EXIT_USAGE
    try:
        window = schedule.parse_duration(args.since) if args.since else None
    except ValueError as exc:
        print(f"alertd: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: run alertd first")
        return EXIT_OK
    with Store.open(config.state_path, readonly=True) as store:
        message = pipeline.preview_message(
            config, watchlist, load_templates(config.templates_dir), store, subscriber, _now(), window=window
        )
    if message is None:
        hint = "" if window else " (try --since 7d to see what was already sent)"
        print(f"nothing to preview for {subscriber.email}: no pending matches{hint}")
        return EXIT_OK
    if output.suffix.lower() == ".eml":
        output.write_bytes(message.as_bytes(policy=message.policy.clone(linesep="\n")))
    else:
        html = message.get_body(("html",))
        assert html is not None
        output.write_text(str(html.get_content()), encoding="utf-8")
    print(f"wrote {output}: {message['Subject']}")
    return EXIT_OK


def cmd_test_email(args: argparse.Namespace) -> int:
    """Send a sample digest through the configured delivery, showing each SMTP step and reply."""
    import dataclasses
    import secrets

    from alertd.deliver import deliver, read_smtp_password, smtp_conversation
    from alertd.errors import DeliveryError
    from alertd.render import load_templates, render_digest, sample_digest

    config, _ = _load(args)
    known = _subscriber(config, args.to)
    language = args.language or (known.language if known else "fr")
    digest = dataclasses.replace(
        sample_digest(language),
        digest_id=f"test-{secrets.token_hex(12)}",  # a fresh Message-ID: servers may drop a repeated one
        subscriber_email=args.to,
        subscriber_name=known.name if known else args.to.split("@")[0],
        sender=config.delivery.sender,
        generated_at=_now(),
        timezone=known.timezone if known else "UTC",
        config_path=str(config.path),
        watchlist_path=str(config.watchlist),
    )
    message = render_digest(digest, load_templates(config.templates_dir))
    delivery = config.delivery
    try:
        if delivery.method == "smtp":
            password = read_smtp_password(delivery.smtp, base_dir=config.path.parent, environ=os.environ)
            report = asyncio.run(smtp_conversation(message, delivery.smtp, password=password, echo=print))
            for address, (code, text) in report.refused.items():
                print(f"refused: {address}: {code} {text}")
            print(f"accepted for {', '.join(report.accepted)}: {message['Message-ID']}")
        else:
            report = asyncio.run(deliver(message, delivery, base_dir=config.path.parent))
            print(f"{delivery.method}: written to {report.location} ({message['Message-ID']})")
    except DeliveryError as exc:
        print(f"alertd: test email not delivered: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    """``outbox``: pending and failed messages; ``outbox retry ID...``: requeue them, lift a delivery pause."""
    from alertd.config import load_config
    from alertd.store import Store

    config = load_config(_config_path(args))
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: alertd has never run with this config")
        return EXIT_OK
    if args.action == "retry":
        return _outbox_retry(config, args.ids)
    if args.ids:
        print("alertd: outbox: IDs go with `retry`", file=sys.stderr)
        return EXIT_USAGE
    with Store.open(config.state_path, readonly=True) as store:
        messages = store.outbox(("pending", "failed"))
        pause = store.delivery_pause()
    if pause is not None:
        print(f"delivery PAUSED since {_local(pause.since)}: {pause.reason}")
        print("  fix [delivery.smtp] or the password, then reload the config or run `alertd outbox retry`")
    if not messages:
        print("outbox empty: no pending or failed messages")
        return EXIT_OK
    print(f"{'ID':>5}  {'SUBSCRIBER':<28} {'STATUS':<9} {'TRIES':>5}  {'NEXT ATTEMPT':<16}  LAST ERROR")
    for m in messages:
        status = "retrying" if m.status == "pending" and m.attempts else m.status
        when = _local(m.next_attempt_at) if m.status == "pending" else "-"
        print(f"{m.id:>5}  {m.subscriber:<28} {status:<9} {m.attempts:>5}  {when:<16}  {m.last_error or ''}")
    return EXIT_OK


def _outbox_retry(config: Config, ids: Sequence[int]) -> int:
    from alertd.store import Store

    failed = False
    with Store.open(config.state_path) as store:
        for outbox_id in ids:
            if store.requeue(outbox_id, _now()):
                print(f"message {outbox_id} requeued")
            else:
                print(f"alertd: no pending or failed message {outbox_id}", file=sys.stderr)
                failed = True
        if store.resume_delivery():
            print("delivery pause lifted")
    if ids and not failed:
        print("the daemon sends it within a minute (or run `alertd flush`)")
    return EXIT_FAILURE if failed else EXIT_OK


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


# --- feeds ---------------------------------------------------------------------------------------------------


def cmd_feeds(args: argparse.Namespace) -> int:
    """Each configured feed's health: last success, last error and its class, failures, next poll, moves."""
    from alertd.config import load_config
    from alertd.store import FeedState, Store

    config = load_config(_config_path(args))
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


def _feed_row(url: str, name: str, tags: Sequence[str], state: Any) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    if state is None:
        status = "new"
    elif state.gone:
        status = "gone"
    elif state.consecutive_failures:
        status = "failing"
    elif state.last_success_at is None:
        status = "new"
    else:
        status = "moved" if state.effective_url else "ok"
    return {
        "url": url,
        "name": name,
        "tags": list(tags),
        "status": status,
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
    return _local(datetime.fromisoformat(text)) if text else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_feeds_import(args: argparse.Namespace) -> int:
    """Append an OPML file's feeds to the config's feeds_file; skip (and say) duplicates and non-http URLs."""
    from alertd import opml
    from alertd.config import load_config

    config_path = _config_path(args)
    config = load_config(config_path)
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
        load_config(config_path)
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

    config = load_config(_config_path(args))
    sys.stdout.write(opml.write_opml(config.feeds))
    return EXIT_OK
