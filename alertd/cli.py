"""The ``alertd`` command: parse arguments, hand them to a command (:mod:`alertd.commands`), exit with a meaning.

Exit status: 0 ok, 1 runtime failure (a feed or a delivery failed), 2 usage, 78 configuration error, 141 when the
reader of the output went away (``alertd match ... | head``), as for a shell tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alertd import __version__
from alertd.commands import EXIT_BROKEN_PIPE, EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE
from alertd.commands.daemon import cmd_flush, cmd_run, cmd_status
from alertd.commands.feeds import (
    cmd_feeds,
    cmd_feeds_add,
    cmd_feeds_export,
    cmd_feeds_import,
    cmd_feeds_pause,
    cmd_feeds_poll,
    cmd_feeds_remove,
    cmd_feeds_resume,
)
from alertd.commands.mail import cmd_outbox, cmd_preview, cmd_test_email
from alertd.commands.setup import cmd_init
from alertd.commands.watchlist import cmd_check_config, cmd_match, cmd_replay
from alertd.errors import AlertdError, ConfigError
from alertd.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format, os.environ)
    if getattr(args, "utc", False):  # every local time this process prints is UTC from here on
        os.environ["TZ"] = "UTC"
        time.tzset()
    try:
        result: int = args.handler(args)
        sys.stdout.flush()  # here, where a reader that went away can still be told apart from a failure
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except AlertdError as exc:
        print(f"alertd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return result


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush of what is still buffered for a
    reader that went away does not raise a second time (the recipe of the ``signal`` module's documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
        "--utc",
        action="store_true",
        help="print times in UTC, not in the system's zone nor a subscriber's (JSON carries offsets anyway)",
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

    parser.set_defaults(handler=usage, log_level="info", log_format="text", utc=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(
        group: Any, name: str, summary: str, examples: Sequence[str], *, parents: Sequence[Any] = (common,)
    ) -> argparse.ArgumentParser:
        """A subcommand whose ``--help`` says what it does (``summary``) and shows ``examples``."""
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            parents=list(parents),
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return sub

    run = command(
        commands,
        "run",
        "run the daemon in the foreground",
        [
            "alertd run -c /etc/alertd/alertd.toml",
            "alertd run --once            # poll every feed once, deliver, exit",
        ],
    )
    run.add_argument("--once", action="store_true", help="poll every feed once, deliver what is due, exit")
    run.set_defaults(handler=cmd_run)

    flush = command(
        commands,
        "flush",
        "build and deliver every pending digest now",
        [
            "alertd flush                  # build and send every pending digest and alert now",
            "alertd flush --now            # and retry now what the server deferred (451...)",
        ],
    )
    flush.add_argument(
        "--now", action="store_true", help="also try now the messages waiting for their next attempt (4xx)"
    )
    flush.set_defaults(handler=cmd_flush)

    check = command(
        commands, "check-config", "validate the config and watchlist", ["alertd check-config -c alertd.toml"]
    )
    check.set_defaults(handler=cmd_check_config)

    match = command(
        commands,
        "match",
        "run the watchlist over JSON lines or a text",
        [
            'alertd match --title "Alibaba ouvre un bureau à Paris"',
            'alertd match --title "Code promo AliExpress" --feed "BFM Business"',
            "alertd match --input items.jsonl --explain | less",
        ],
    )
    match.add_argument("--input", type=Path, help="JSON lines file (default: standard input)")
    match.add_argument(
        "--title",
        "--text",
        help="explain one item with this title instead of reading JSON lines (--text is the same option)",
    )
    match.add_argument("--summary", help="the item's summary, HTML or text (also without --title)")
    match.add_argument("--link", help="the item's link, for link-scoped terms")
    match.add_argument(
        "--feed", metavar="NAME", help="the item's feed, for feeds/exclude_feeds (tags: config)"
    )
    match.add_argument(
        "--explain",
        action="store_true",
        help="JSON lines: print why each topic matched or not instead of one JSON line per item",
    )
    match.set_defaults(handler=cmd_match)

    replay = command(
        commands,
        "replay",
        "show what the current watchlist would have matched in stored items",
        ["alertd replay --since 30d --topic chinese-ecommerce", "alertd replay --since 7d --deliver"],
    )
    replay.add_argument("--since", default="7d", help="how far back, e.g. 7d, 12h (default: 7d)")
    replay.add_argument("--topic", help="only this topic id")
    replay.add_argument(
        "--deliver", action="store_true", help="also queue these matches for the subscribers' next digests"
    )
    replay.set_defaults(handler=cmd_replay)

    status = command(
        commands,
        "status",
        "what the daemon is doing (works when stopped)",
        ["alertd status", "alertd status --json | jq '.running, .outbox'"],
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    preview = command(
        commands,
        "preview",
        "render the digest a subscriber would get now, without sending it",
        ["alertd preview -o digest.html", "alertd preview --subscriber marie@example.org --since 1d -o -"],
    )
    preview.add_argument("--subscriber", metavar="EMAIL", help="whose digest (default: the first subscriber)")
    preview.add_argument(
        "--since", metavar="DURATION", help="every match stored in this window (e.g. 1d), sent or not"
    )
    preview.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        metavar="FILE",
        help="FILE.html (the HTML part), FILE.txt (the text part), FILE.eml (the whole message), or - (the text "
        "part on standard output)",
    )
    preview.set_defaults(handler=cmd_preview)

    test_email = command(
        commands,
        "test-email",
        "send a sample digest through the configured delivery",
        ["alertd test-email --to me@example.org --language en"],
    )
    test_email.add_argument("--to", required=True, metavar="EMAIL", help="recipient of the sample")
    test_email.add_argument("--language", choices=["fr", "en"], help="default: that subscriber's, else fr")
    test_email.set_defaults(handler=cmd_test_email)

    outbox = command(
        commands,
        "outbox",
        "list the messages not yet sent; `outbox retry [ID...]` tries failed and deferred ones again",
        [
            "alertd outbox",
            "alertd outbox --json",
            "alertd outbox retry 12",
            "alertd outbox retry   # all of them",
        ],
    )
    outbox.add_argument("action", nargs="?", choices=["list", "retry"], default="list", help="default: list")
    outbox.add_argument(
        "ids",
        nargs="*",
        type=int,
        metavar="ID",
        help="retry: messages to requeue (default: every failed or retrying one); also lifts a pause",
    )
    outbox.add_argument("--json", action="store_true", help="machine-readable output (list)")
    outbox.set_defaults(handler=cmd_outbox)

    feeds = command(
        commands,
        "feeds",
        "each feed's health; `feeds add`, `remove`, `pause`, `resume` manage them, `feeds poll` polls now, "
        "`feeds import` / `export` read and write OPML",
        [
            "alertd feeds",
            "alertd feeds --json | jq -r '.[] | select(.status != \"ok\") | .name'",
            "alertd feeds add https://example.org/rss --check",
            'alertd feeds poll "BFM Économie"',
            "alertd feeds import subscriptions.opml",
            "alertd feeds export > feeds.opml",
        ],
    )
    feeds.add_argument("--json", action="store_true", help="machine-readable output")
    feeds.set_defaults(handler=cmd_feeds)
    feeds_commands = feeds.add_subparsers(title="feeds commands", metavar="ACTION")
    feeds_import = command(
        feeds_commands,
        "import",
        "add the feeds of an OPML file to the config's feeds_file",
        ["alertd feeds import subscriptions.opml"],
    )
    feeds_import.add_argument("file", type=Path, metavar="FILE.opml")
    feeds_import.set_defaults(handler=cmd_feeds_import)
    feeds_export = command(
        feeds_commands, "export", "write every feed as OPML", ["alertd feeds export > feeds.opml"]
    )
    feeds_export.set_defaults(handler=cmd_feeds_export)
    feeds_add = command(
        feeds_commands,
        "add",
        "add a feed to the config's feeds_file (a running daemon picks it up at once)",
        [
            "alertd feeds add https://www.bfmtv.com/rss/economie/ --check",
            'alertd feeds add https://example.org/rss --name "Exemple" --tags chine,export --interval 1h',
        ],
    )
    feeds_add.add_argument("url", metavar="URL")
    feeds_add.add_argument("--name", help="default: the feed's title with --check, else the host name")
    feeds_add.add_argument("--tags", metavar="A,B", help="comma-separated tags (topics may scope to them)")
    feeds_add.add_argument("--interval", metavar="DURATION", help="its own poll interval (e.g. 1h)")
    feeds_add.add_argument(
        "--check", action="store_true", help="fetch it once first, to prove it is a feed (and take its title)"
    )
    feeds_add.set_defaults(handler=cmd_feeds_add)
    for name, summary, handler in (
        ("remove", "remove a feed from the feeds_file (what it had stays known)", cmd_feeds_remove),
        ("pause", "keep a feed of the feeds_file but stop polling it", cmd_feeds_pause),
        ("resume", "poll a paused feed again", cmd_feeds_resume),
    ):
        edit = command(feeds_commands, name, summary, [f'alertd feeds {name} "BFM Économie"'])
        edit.add_argument("feed", metavar="NAME|URL")
        edit.set_defaults(handler=handler)
    feeds_poll = command(
        feeds_commands,
        "poll",
        "poll feeds now: the running daemon does it if there is one, else this command, and prints the outcome",
        ["alertd feeds poll", 'alertd feeds poll "BFM Économie" https://example.org/rss'],
    )
    feeds_poll.add_argument("feeds", nargs="*", metavar="NAME|URL", help="default: every feed not paused")
    feeds_poll.set_defaults(handler=cmd_feeds_poll)

    init = command(
        commands,
        "init",
        "write a commented example config and watchlist into DIR",
        ["alertd init /etc/alertd && alertd check-config -c /etc/alertd/alertd.toml"],
        parents=(),
    )
    init.add_argument("directory", type=Path)
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(handler=cmd_init)
    return parser
