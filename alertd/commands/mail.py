"""``alertd preview``, ``test-email`` and ``outbox``: the mail, before and after it goes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alertd import outbox, schedule
from alertd.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_path, load, local, now, subscriber_of
from alertd.config import Config
from alertd.records import DeliveryPause, OutboxMessage


def cmd_preview(args: argparse.Namespace) -> int:
    """Render what a subscriber would get now, into a file; reads the state database only."""
    from alertd import compose
    from alertd.render import load_templates
    from alertd.store import Store

    config, watchlist = load(args)
    output: Path = args.output
    to_stdout = str(output) == "-"
    if not to_stdout and output.suffix.lower() not in (".html", ".eml", ".txt"):
        print(
            f"alertd: --output: {output} must end in .html, .txt or .eml, or be - (the text part)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    subscriber = subscriber_of(config, args.subscriber)
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
        message = compose.preview_message(
            config, watchlist, load_templates(config.templates_dir), store, subscriber, now(), window=window
        )
    if message is None:
        hint = "" if window else " (try --since 7d to see what was already sent)"
        print(f"nothing to preview for {subscriber.email}: no pending matches{hint}")
        return EXIT_OK
    if to_stdout or output.suffix.lower() == ".txt":
        text = message.get_body(("plain",))
        assert text is not None
        content = str(text.get_content()).replace("\r\n", "\n")
        if to_stdout:
            sys.stdout.write(content)
            return EXIT_OK
        output.write_text(content, encoding="utf-8")
    elif output.suffix.lower() == ".eml":
        output.write_bytes(message.as_bytes(policy=message.policy.clone(linesep="\n")))
    else:
        html = message.get_body(("html",))
        assert html is not None
        output.write_text(str(html.get_content()), encoding="utf-8")
    print(f"wrote {output}: {message['Subject']}")
    return EXIT_OK


def cmd_test_email(args: argparse.Namespace) -> int:
    """Send a sample digest through the configured delivery, showing each SMTP step and reply."""
    import secrets

    from alertd import compose
    from alertd.config import SubscriberConfig, default
    from alertd.deliver import deliver, read_smtp_password, smtp_conversation
    from alertd.errors import DeliveryError
    from alertd.render import load_templates
    from alertd.sample import sample_mail
    from alertd.schedule import parse_digest_schedule

    config, _ = load(args)
    known = subscriber_of(config, args.to)
    recipient = known or SubscriberConfig(
        email=args.to,
        name=args.to.split("@")[0],
        topics=None,
        schedule=parse_digest_schedule("immediate"),
        timezone="UTC",
        language=default("subscriber", "language"),
    )
    if args.language:
        recipient = dataclasses.replace(recipient, language=args.language)
    # A fresh Message-ID for every test mail: servers may drop a message whose Message-ID they have seen.
    sample = sample_mail(recipient.language, key_prefix=f"test-{secrets.token_hex(6)}")
    message = compose.build_message(
        config,
        sample.topic_names,
        load_templates(config.templates_dir),
        dataclasses.replace(recipient, email=args.to),
        sample.matched,
        now(),
        health=sample.health,
        already_sent=sample.already_sent,
    )
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

    config = load_config(config_path(args))
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: alertd has never run with this config")
        return EXIT_OK
    if args.action == "retry":
        return _outbox_retry(config, args.ids)
    if args.ids:
        print("alertd: outbox: IDs go with `retry`", file=sys.stderr)
        return EXIT_USAGE
    with Store.open(config.state_path, readonly=True) as store:
        messages = store.outbox(("pending", "sending", "failed"))
        pause = store.delivery_pause()
    if args.json:
        print(json.dumps(_outbox_json(messages, pause), ensure_ascii=False, indent=2))
        return EXIT_OK
    if pause is not None:
        print(f"delivery PAUSED since {local(pause.since)}: {pause.reason}")
        print("  fix [delivery.smtp] or the password, then reload the config or run `alertd outbox retry`")
    if not messages:
        print("outbox empty: no pending or failed messages")
        return EXIT_OK
    print(f"{'ID':>5}  {'SUBSCRIBER':<28} {'STATUS':<9} {'TRIES':>5}  {'NEXT ATTEMPT':<23}  LAST ERROR")
    for m in messages:
        status = outbox.condition(m)
        when = local(m.next_attempt_at, seconds=True) if m.status == "pending" else "-"
        print(f"{m.id:>5}  {m.subscriber:<28} {status:<9} {m.attempts:>5}  {when:<23}  {m.last_error or ''}")
    return EXIT_OK


def _outbox_json(messages: Sequence[OutboxMessage], pause: DeliveryPause | None) -> dict[str, Any]:
    """``outbox --json``: every message not yet sent, and the delivery pause; times in RFC 3339 with offsets."""
    return {
        "paused": None if pause is None else {"since": pause.since.isoformat(), "reason": pause.reason},
        "messages": [
            {
                "id": m.id,
                "message_id": m.message_id,
                "subscriber": m.subscriber,
                "kind": m.kind,
                "status": outbox.condition(m),
                "attempts": m.attempts,
                "created_at": m.created_at.isoformat(),
                "next_attempt_at": m.next_attempt_at.isoformat() if m.status == "pending" else None,
                "last_error": m.last_error,
                "claimed_by": m.claimed_by,
            }
            for m in messages
        ],
    }


def _outbox_retry(config: Config, ids: Sequence[int]) -> int:
    from alertd.store import Store

    failed = False
    with Store.open(config.state_path) as store:
        if not ids:  # every message that is not going out by itself: failed, or waiting for its next attempt
            ids = [
                m.id
                for m in store.outbox(("pending", "failed"))
                if outbox.condition(m) in ("failed", "retrying")
            ]
            if not ids and store.delivery_pause() is None:
                print(
                    "nothing to retry: no failed or retrying message, and delivery is not paused",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
        for outbox_id in ids:
            if store.requeue(outbox_id, now()):
                print(f"message {outbox_id} requeued")
            else:
                print(f"alertd: no pending or failed message {outbox_id}", file=sys.stderr)
                failed = True
        if store.resume_delivery():
            print("delivery pause lifted")
    if ids and not failed:
        print("the daemon sends it within a minute (or run `alertd flush`)")
    return EXIT_FAILURE if failed else EXIT_OK
