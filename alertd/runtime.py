"""What the pipeline steps share, built once from a config (and rebuilt on reload): the store, the HTTP
client, the parse workers, the templates; and the daemon's view of its own condition."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import jinja2

from alertd import incremental
from alertd.config import Config
from alertd.deliver import read_smtp_password
from alertd.fetch import FetchPolicy, make_client
from alertd.metrics import Metrics
from alertd.netguard import allow_private_from_env
from alertd.parse import ParserPool
from alertd.records import AttemptRecord
from alertd.render import load_templates
from alertd.store import Store
from alertd.watchlist import Watchlist


@dataclass
class Runtime:
    """Everything the pipeline steps share, built once from a config (and rebuilt on reload)."""

    config: Config
    watchlist: Watchlist
    store: Store
    client: httpx.AsyncClient
    parser: ParserPool
    templates: jinja2.Environment
    fetch_policy: FetchPolicy
    smtp_password: str | None = None
    rng: random.Random = field(default_factory=random.Random)
    # One drain at a time: two concurrent drains would both pick the same due message and send it twice.
    delivery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    metrics: Metrics = field(default_factory=Metrics)
    # Bounds the daemon's concurrent polls to [poll] concurrency; created on first use (see poll_slot).
    poll_slots: asyncio.Semaphore | None = None
    layouts: incremental.Layouts = field(default_factory=incremental.Layouts)
    claimant: str = field(default_factory=lambda: f"pid {os.getpid()}")
    """Who claims outbox messages (``pid 1234 (daemon)``): one process attempts each message."""
    stopping: bool = False
    """Set when the process stops: the drain attempts no new message (the one in flight finishes)."""
    delivering: int = 0
    """Delivery attempts in flight (a stop waits for their server's reply)."""
    state_problem: str | None = None
    """Why the state cannot be written, while it cannot (log, status line, metrics)."""
    unrecorded: list[tuple[AttemptRecord, datetime]] = field(default_factory=list)
    """Attempts that happened but could not be recorded yet: nothing is sent until they are."""


def poll_slot(rt: Runtime) -> asyncio.Semaphore:
    """The semaphore every scheduled poll holds while it runs: at most ``[poll] concurrency`` at once."""
    if rt.poll_slots is None:
        rt.poll_slots = asyncio.Semaphore(rt.config.poll.concurrency)
    return rt.poll_slots


def fetch_policy(config: Config) -> FetchPolicy:
    return FetchPolicy(
        user_agent=config.poll.user_agent,
        deadline=config.poll.timeout.total_seconds(),
        max_body_bytes=config.poll.max_body_bytes,
        allow_private=config.poll.allow_private + allow_private_from_env(),
    )


@contextlib.asynccontextmanager
async def open_runtime(
    config: Config, watchlist: Watchlist, environ: Mapping[str, str], *, purpose: str = "alertd"
) -> AsyncIterator[Runtime]:
    """Everything a pipeline step needs, opened in order and closed in reverse. ``purpose`` names this process
    in the outbox claims it makes ("daemon", "flush", "run --once")."""
    async with contextlib.AsyncExitStack() as stack:
        store = Store.open(config.state_path)
        stack.callback(store.close)
        policy = fetch_policy(config)
        client = await stack.enter_async_context(make_client(policy))
        parser = ParserPool()
        stack.callback(parser.close)
        password = None
        if config.delivery.method == "smtp":
            password = read_smtp_password(config.delivery.smtp, base_dir=config.path.parent, environ=environ)
        yield Runtime(
            config=config,
            watchlist=watchlist,
            store=store,
            client=client,
            parser=parser,
            templates=load_templates(config.templates_dir),
            fetch_policy=policy,
            smtp_password=password,
            claimant=f"pid {os.getpid()} ({purpose})",
        )
