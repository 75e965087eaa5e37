"""``alertd check-config``, ``match`` and ``replay``: the config and the watchlist, tried on text and on history."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from alertd import schedule
from alertd.commands import EXIT_OK, EXIT_USAGE, load, local, now
from alertd.errors import did_you_mean
from alertd.explain import explain_item, format_explanation
from alertd.match import match_item
from alertd.models import Match
from alertd.text import html_to_text


def cmd_check_config(args: argparse.Namespace) -> int:
    config, watchlist = load(args)
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
    """Explain the item given by ``--title``/``--summary``/``--link``/``--feed``, or match JSON lines.

    A JSON line that is not an object with an ``id`` is reported on standard error with its line number and
    skipped; the others are still matched, and the command then exits with EXIT_USAGE (2).
    """
    config, watchlist = load(args)
    tags = {feed.name.casefold(): frozenset(feed.tags) for feed in config.feeds}
    given = (args.title, args.summary, args.link, args.feed)
    if any(value is not None for value in given):
        feed = args.feed or ""
        explanation = explain_item(
            watchlist,
            args.title or "",
            html_to_text(args.summary or ""),
            link=args.link or "",
            feed_name=feed,
            feed_tags=tags.get(feed.casefold(), frozenset()),
        )
        print(format_explanation(explanation))
        return EXIT_OK
    bad = 0
    source: TextIO = args.input.open(encoding="utf-8") if args.input else sys.stdin
    with source:
        for number, record, problem in _json_lines(source):
            if record is None:
                print(f"alertd: line {number}: {problem}; line skipped", file=sys.stderr)
                bad += 1
                continue
            title = _text_field(record, "title")
            summary = html_to_text(_text_field(record, "summary"))
            link = _text_field(record, "link")
            feed = _text_field(record, "feed")
            feed_tags = tags.get(feed.casefold(), frozenset())
            if args.explain:
                explanation = explain_item(watchlist, title, summary, link, feed, feed_tags)
                print(f"# {record['id']}")
                print(format_explanation(explanation))
                print()
                continue
            matches = match_item(watchlist, title, summary, feed_name=feed, feed_tags=feed_tags, link=link)
            print(
                json.dumps(
                    {"id": record["id"], "topics": [_match_json(m) for m in matches]}, ensure_ascii=False
                )
            )
    if bad:
        print(f"alertd: {bad} malformed input line{'s' if bad > 1 else ''} skipped", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _json_lines(source: TextIO) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record, "") per non-blank line, or (line number, None, what is wrong with it)."""
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(record, dict):
            yield number, None, f"not a JSON object with an 'id' (a JSON {_json_type(record)})"
        elif "id" not in record:
            yield number, None, "a JSON object without an 'id'"
        else:
            yield number, record, ""


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "null"


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

    config, watchlist = load(args)
    try:
        window = schedule.parse_duration(args.since)
    except ValueError as exc:
        print(f"alertd: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.topic and watchlist.topic(args.topic) is None:
        hint = did_you_mean(args.topic, [topic.id for topic in watchlist.topics])
        print(f"alertd: --topic: no topic {args.topic!r} in {config.watchlist}{hint}", file=sys.stderr)
        return EXIT_USAGE
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: run alertd first")
        return EXIT_OK
    counts: dict[str, int] = {}
    total = 0
    found: list[tuple[str, Match]] = []
    with Store.open(config.state_path, readonly=not args.deliver) as store:
        for item, first_seen in store.items_since(now() - window):
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
                print(f"{local(first_seen)}  [{m.topic_id}]  {item.title}  ({item.feed_name})")
                print(f"    why: {', '.join(m.terms)}" + (f"  → {item.link}" if item.link else ""))
        if args.deliver:
            added = store.add_matches(found, now())
    summary = ", ".join(f"{topic}: {n}" for topic, n in counts.items()) or "no matches"
    print(f"\n{total} stored items since {args.since} ago; {summary}")
    if args.deliver:
        print(
            f"{added} new matches queued for the subscribers' next digests (already delivered ones are skipped)"
        )
    return EXIT_OK
