"""The daemon: APScheduler 3 on asyncio, one poll job per feed, one digest job per subscriber, signals.

Job defaults are explicit: ``coalesce=True`` (a backlog of missed runs collapses into one), ``max_instances=1``
(a slow feed is never polled twice at once) and ``misfire_grace_time=300`` (APScheduler 3's default of one
second silently skips runs after a busy moment or a suspend).

SIGTERM and SIGINT stop the scheduler, let in-flight polls and deliveries finish for up to ``STOP_TIMEOUT``
seconds and cancel the rest (every step is one transaction, so a cancelled step leaves nothing half-done),
then exit 0. SIGHUP reloads the config and the watchlist; an invalid new file keeps the last good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from alertd import pipeline, schedule
from alertd.config import Config, FeedConfig, SubscriberConfig, load_config
from alertd.deliver import read_smtp_password
from alertd.errors import ConfigError
from alertd.fetch import FetchPolicy, make_client
from alertd.parse import ParserPool
from alertd.render import check_templates, load_templates
from alertd.store import Store
from alertd.watchlist import Watchlist, load_watchlist

log = logging.getLogger("alertd.service")

STOP_TIMEOUT = 20.0
OUTBOX_INTERVAL = timedelta(seconds=60)
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}


def load_all(config_path: Path) -> tuple[Config, Watchlist]:
    """Load the config and its watchlist, with every problem of both reported at once."""
    config = load_config(config_path)
    try:
        watchlist = load_watchlist(config.watchlist)
    except ConfigError:
        raise
    topics = frozenset(topic.id for topic in watchlist.topics)
    config = load_config(config_path, known_topics=topics)
    env = load_templates(config.templates_dir)
    problems = check_templates(env)
    if problems:
        target = config.templates_dir or config.path
        raise ConfigError.single(target, "template error: " + "; ".join(problems), key="templates_dir")
    return config, watchlist


def fetch_policy(config: Config) -> FetchPolicy:
    return FetchPolicy(
        user_agent=config.poll.user_agent,
        deadline=config.poll.timeout.total_seconds(),
        max_body_bytes=config.poll.max_body_bytes,
    )


@contextlib.asynccontextmanager
async def open_runtime(config: Config, watchlist: Watchlist, environ: dict[str, str]) -> Any:
    """Everything a pipeline step needs, opened in order and closed in reverse."""
    async with AsyncExitStack() as stack:
        store = Store.open(config.state_path)
        stack.callback(store.close)
        policy = fetch_policy(config)
        client = await stack.enter_async_context(make_client(policy))
        parser = ParserPool()
        stack.callback(parser.close)
        password = None
        if config.delivery.method == "smtp":
            password = read_smtp_password(config.delivery.smtp, base_dir=config.path.parent, environ=environ)
        yield pipeline.Runtime(
            config=config,
            watchlist=watchlist,
            store=store,
            client=client,
            parser=parser,
            templates=load_templates(config.templates_dir),
            fetch_policy=policy,
            smtp_password=password,
        )


async def run_once(rt: pipeline.Runtime, now: Callable[[], datetime]) -> int:
    """Poll every feed once (concurrently, bounded), deliver what is due; 0 if all went well, else 1."""
    pipeline.register_subscribers(rt, now())
    limit = asyncio.Semaphore(rt.config.poll.concurrency)

    async def one(feed: FeedConfig) -> pipeline.PollReport:
        async with limit:
            return await pipeline.poll_feed(rt, feed, now())

    reports = await asyncio.gather(*(one(feed) for feed in rt.config.feeds))
    pipeline.flush_digests(rt, now())
    attempts = await pipeline.drain_outbox(rt, now())
    failed = [r for r in reports if r.failed]
    for report in failed:
        log.error("feed failed: %s (%s): %s: %s", report.name, report.url, report.error_class, report.error)
    undelivered = [a for a in attempts if a.status != "sent"]
    for attempt in undelivered:
        log.error("delivery to %s not done (%s): %s", attempt.subscriber, attempt.status, attempt.error)
    return 1 if failed or undelivered else 0


class Daemon:
    """``alertd run``: schedule polls and digests until a stop signal arrives."""

    def __init__(self, config_path: Path, environ: dict[str, str]) -> None:
        self.config_path = config_path
        self.environ = environ
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.rng = random.Random()
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
        self.rt: pipeline.Runtime | None = None

    async def run(self, config: Config, watchlist: Watchlist) -> int:
        async with open_runtime(config, watchlist, self.environ) as rt:
            self.rt = rt
            pipeline.register_subscribers(rt, self.now())
            self._install_signals()
            self._schedule_all()
            self.scheduler.start()
            log.info(
                "alertd started: %d feeds, %d topics, %d subscribers, delivery %s",
                len(config.feeds),
                len(watchlist.topics),
                len(config.subscribers),
                config.delivery.method,
            )
            while not self.stopping.is_set():
                waiters = [asyncio.create_task(self.stopping.wait()), asyncio.create_task(self.reload_requested.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                if self.reload_requested.is_set() and not self.stopping.is_set():
                    self.reload_requested.clear()
                    self.reload()
            await self._shutdown()
        log.info("alertd stopped")
        return 0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)

    def _on_stop(self, sig: signal.Signals) -> None:
        log.info("received %s: stopping (in-flight work gets %.0f s)", sig.name, STOP_TIMEOUT)
        self.stopping.set()

    async def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        if self.in_flight:
            done, pending = await asyncio.wait(self.in_flight, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
                log.warning("stop: %d unfinished steps rolled back", len(pending))

    # --- jobs ----------------------------------------------------------------------------------------------

    def _track(self, step: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """Wrap a job so shutdown can wait for it, and so one failing step never kills the scheduler."""

        async def job() -> None:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None
            self.in_flight.add(task)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled step failed; it will run again at its next time")
            finally:
                self.in_flight.discard(task)

        return job

    def _schedule_all(self) -> None:
        assert self.rt is not None
        for feed in self.rt.config.feeds:
            self._schedule_feed(feed)
        for subscriber in self.rt.config.subscribers:
            self._schedule_digest(subscriber)
        self.scheduler.add_job(
            self._track(self._drain),
            IntervalTrigger(seconds=OUTBOX_INTERVAL.total_seconds()),
            id="outbox",
            next_run_time=self.now() + timedelta(seconds=5),
            replace_existing=True,
        )

    def _schedule_feed(self, feed: FeedConfig) -> None:
        assert self.rt is not None
        interval = (feed.interval or self.rt.config.poll.interval).total_seconds()
        first = self.now() + timedelta(seconds=self.rng.uniform(0, min(10.0, interval / 4)))
        self.scheduler.add_job(
            self._track(lambda: self._poll(feed.url)),
            IntervalTrigger(seconds=interval, jitter=int(interval * self.rt.config.poll.jitter)),
            id=f"poll:{feed.url}",
            next_run_time=first,
            replace_existing=True,
        )

    def _schedule_digest(self, subscriber: SubscriberConfig) -> None:
        if subscriber.schedule.is_immediate:
            return
        assert self.rt is not None
        _, last = self.rt.store.subscriber_state(subscriber.email, self.now())
        due = schedule.next_digest_time(subscriber.schedule, last, ZoneInfo(subscriber.timezone))
        self.scheduler.add_job(
            self._track(lambda: self._digest(subscriber.email)),
            DateTrigger(run_date=max(due, self.now())),
            id=f"digest:{subscriber.email}",
            replace_existing=True,
        )

    async def _poll(self, url: str) -> None:
        assert self.rt is not None
        feed = next((f for f in self.rt.config.feeds if f.url == url), None)
        if feed is None:
            return
        report = await pipeline.poll_feed(self.rt, feed, self.now())
        if report.matches and any(s.schedule.is_immediate for s in self.rt.config.subscribers):
            pipeline.flush_digests(self.rt, self.now())
            await pipeline.drain_outbox(self.rt, self.now())

    async def _digest(self, email: str) -> None:
        assert self.rt is not None
        subscriber = next((s for s in self.rt.config.subscribers if s.email == email), None)
        if subscriber is None:
            return
        try:
            pipeline.flush_digests(self.rt, self.now(), only=email)
            await pipeline.drain_outbox(self.rt, self.now())
        finally:
            self._schedule_digest(subscriber)

    async def _drain(self) -> None:
        assert self.rt is not None
        await pipeline.drain_outbox(self.rt, self.now())

    # --- reload --------------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Reload config and watchlist; keep the running ones if the new files are invalid."""
        assert self.rt is not None
        try:
            config, watchlist = load_all(self.config_path)
        except ConfigError as exc:
            log.error("reload failed, keeping the previous configuration:\n%s", exc)
            return False
        old = self.rt.config
        self.rt.config = config
        self.rt.watchlist = watchlist
        self.rt.templates = load_templates(config.templates_dir)
        old_feeds = {f.url for f in old.feeds}
        new_feeds = {f.url for f in config.feeds}
        for url in old_feeds - new_feeds:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"poll:{url}")
        for feed in config.feeds:
            if feed.url not in old_feeds or feed != next(f for f in old.feeds if f.url == feed.url):
                self._schedule_feed(feed)
        for subscriber in old.subscribers:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"digest:{subscriber.email}")
        pipeline.register_subscribers(self.rt, self.now())
        for subscriber in config.subscribers:
            self._schedule_digest(subscriber)
        log.info(
            "configuration reloaded: feeds +%d -%d, %d topics, %d subscribers",
            len(new_feeds - old_feeds),
            len(old_feeds - new_feeds),
            len(watchlist.topics),
            len(config.subscribers),
        )
        return True
