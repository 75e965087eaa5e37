"""``alertd run``, ``run --once``, ``flush`` and ``status``: the daemon, and what it is doing."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from alertd.commands import EXIT_FAILURE, EXIT_OK, config_path, load, now

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
            attempts = await pipeline.drain_outbox(rt, now())
            for attempt in attempts:
                print(
                    f"{attempt.subscriber}: {attempt.status}"
                    + (f" ({attempt.error})" if attempt.error else "")
                )
            if not queued and not attempts:
                print("nothing pending")
            return EXIT_OK if all(a.status == "sent" for a in attempts) else EXIT_FAILURE

    return asyncio.run(flush())


def cmd_status(args: argparse.Namespace) -> int:
    from alertd.config import load_config
    from alertd.errors import ConfigError
    from alertd.status import collect_status, format_status
    from alertd.store import Store
    from alertd.watchlist import load_watchlist

    config = load_config(config_path(args))
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
        print(format_status(status, moment))
    return EXIT_OK
