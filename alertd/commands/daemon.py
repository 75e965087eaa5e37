"""``alertd run``, ``run --once``, ``flush`` and ``status``: the daemon, and what it is doing."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from alertd.commands import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, config_path, load, local, now
from alertd.records import OutboxMessage
from alertd.strings import counted

log = logging.getLogger("alertd")


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon, or with ``--once`` one poll of every feed and a delivery of what is due; either holds the
    state lock (:mod:`alertd.statelock`) for its whole life: one poller and one scheduler per state."""
    from alertd.pipeline import run_once
    from alertd.runtime import open_runtime
    from alertd.service import Daemon
    from alertd.statelock import StateLock, StateLocked

    config, watchlist = load(args)
    purpose = "run --once" if args.once else "daemon"
    try:
        lock = StateLock.acquire(config.state_path, purpose)
    except StateLocked as exc:
        print(
            f"alertd: {exc}: one alertd runs per state (`alertd status` says what it is doing)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    with lock:
        for warning in watchlist.warnings:
            log.warning("%s", warning)
        if args.once:

            async def once() -> int:
                async with open_runtime(config, watchlist, dict(os.environ), purpose=purpose) as rt:
                    return await run_once(rt, now)

            return asyncio.run(once())
        return asyncio.run(Daemon(config_path(args), dict(os.environ)).run(config, watchlist))


def cmd_flush(args: argparse.Namespace) -> int:
    from alertd import pipeline
    from alertd.runtime import open_runtime

    config, watchlist = load(args)

    async def flush() -> int:
        async with open_runtime(config, watchlist, dict(os.environ), purpose="flush") as rt:
            pipeline.register_subscribers(rt, now())
            queued = pipeline.flush_digests(rt, now(), force=True)
            hurried = rt.store.due_now(now()) if args.now else 0
            attempts = await pipeline.drain_outbox(rt, now())
            waiting = {m.id: m for m in rt.store.outbox(("pending", "sending"))}
            paused = rt.store.delivery_pause() is not None
            for attempt in attempts:
                line = f"message {attempt.outbox_id} to {attempt.subscriber}: {attempt.status}"
                line += f" ({attempt.error})" if attempt.error else ""
                deferred = waiting.pop(attempt.outbox_id, None)
                if deferred is not None and attempt.status == "retry":
                    line += f", next attempt {local(deferred.next_attempt_at, seconds=True)}"
                print(line)
            for message in waiting.values():  # not due, held by a pause, or being sent by another process
                print(_waiting_line(message, paused))
            if hurried:
                print(f"{counted(hurried, 'deferred message')} tried now (--now)")
            if not queued and not attempts and not waiting:
                print("nothing pending: no match waits for a digest, no message waits in the outbox")
            return EXIT_OK if all(a.status == "sent" for a in attempts) else EXIT_FAILURE

    return asyncio.run(flush())


def _waiting_line(message: OutboxMessage, paused: bool) -> str:
    """What ``flush`` says of a message it left in the outbox, and what to do about it."""
    what = f"message {message.id} to {message.subscriber}"
    if message.status == "sending":
        return f"{what}: being sent by {message.claimed_by or 'another process'}"
    if paused:
        return f"{what}: held, SMTP delivery is paused — see `alertd outbox`"
    tries = counted(message.attempts, "attempt")
    when = local(message.next_attempt_at, seconds=True)
    hint = "`alertd flush --now` to try it now"
    return f"{what}: retrying ({tries}, {message.last_error or 'deferred'}), next attempt {when} — {hint}"


def cmd_status(args: argparse.Namespace) -> int:
    from alertd.config import load_config
    from alertd.errors import ConfigError
    from alertd.status import collect_status, format_status, without_config
    from alertd.store import Store
    from alertd.watchlist import load_watchlist

    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # and what can still be told: is a daemon running, on what
        print("\n".join(without_config(path, os.environ, now())))
        return EXIT_CONFIG
    if not config.state_path.exists():
        print(f"no state yet at {config.state_path}: alertd has never run with this config")
        return EXIT_OK
    try:
        watchlist = load_watchlist(config.watchlist)
    except ConfigError:
        watchlist = None  # the status is still worth showing; what is pending cannot be told
    moment = now()
    with Store.open(config.state_path, readonly=True) as store:
        status = collect_status(config, watchlist, store, moment)
    if args.json:
        print(json.dumps(status.as_json(), ensure_ascii=False, indent=2))
    else:
        print(format_status(status, moment, utc=args.utc))
    return EXIT_FAILURE if status.attention else EXIT_OK
