"""The daemon: APScheduler 3 on asyncio, one poll job per feed, one digest job per subscriber, signals.

Job defaults are explicit: ``coalesce=True`` (a backlog of missed runs collapses into one), ``max_instances=1``
(a slow feed is never polled twice at once) and ``misfire_grace_time=None``: a job missed by a wall-clock step
forward (NTP correcting a Raspberry Pi after boot, a resumed VM) runs as soon as possible instead of being
dropped (APScheduler 3 drops a one-shot job missed by more than its grace time, for good). A step backward is
seen by a watch on the wall clock against the monotonic one: every job is then scheduled again, from stored
times clamped to what their policy allows (:func:`alertd.polling.job_time`, :func:`alertd.due.clamped`).

SIGTERM and SIGINT stop the scheduler, let in-flight polls finish for up to ``STOP_TIMEOUT`` seconds and a
delivery in flight until its server answers the final dot (:func:`alertd.outbox.stop_wait`), cancel the rest
(every step is one transaction, so a cancelled step leaves nothing half-done), then exit 0. SIGHUP reloads the
config and the watchlist; an invalid new file keeps the last good one (:mod:`alertd.reloads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from alertd import failpoint, health, outbox, pipeline, polling, reloads, schedule
from alertd.config import Config, FeedConfig, SubscriberConfig
from alertd.errors import ConfigError, StateWriteError
from alertd.loader import file_stamps, load_all, watched_files
from alertd.notify import Notifier
from alertd.render import load_templates
from alertd.runtime import Runtime, open_runtime, poll_slot
from alertd.status import feed_judgements, status_line
from alertd.watchlist import Watchlist

UTC = timezone.utc  # datetime.UTC is Python 3.11+

log = logging.getLogger("alertd.service")

STOP_TIMEOUT = 20.0
OUTBOX_INTERVAL = timedelta(seconds=60)
HEARTBEAT_INTERVAL = 1.0
WATCH_INTERVAL = 2.0
STATUS_INTERVAL = 30.0
HOUSEKEEPING_DELAY = timedelta(minutes=10)
CLOCK_LOOK = 0.5
"""Seconds between two looks at the clocks (the wall clock against the monotonic one, and the loop's lag)."""
CLOCK_STEP = 5.0
"""A wall-clock change this much larger or smaller than the time that passed is a step."""
LOOP_LAG_WARNING = 1.0
STATE_RETRY_INTERVAL = 5.0
"""While the state cannot be written, how often the attempts it could not record are tried again."""
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


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
        self.rt: Runtime | None = None
        self.notifier = Notifier(environ)
        self.heartbeat = time.monotonic()
        self.watch = reloads.WatchState()
        self.deferred: dict[Path, tuple[int, int] | None] = {}
        self.answering: asyncio.Task[None] | None = None
        """The task answering ``alertd feeds poll`` requests, while it runs."""
        """The file stamps of the last reload not applied yet (a configuration emptied a moment ago)."""
        self.loop_lag = 0.0
        """The longest event-loop stall since the last status report (seconds)."""

    async def run(self, config: Config, watchlist: Watchlist) -> int:
        async with open_runtime(config, watchlist, self.environ, purpose="daemon") as rt:
            self.rt = rt
            pipeline.register_subscribers(rt, self.now())
            self._install_signals()
            self._schedule_all(resume_because="the daemon started")
            if failpoint.armed("stall_loop"):
                self.scheduler.add_job(
                    _stall_loop, DateTrigger(run_date=self.now() + timedelta(seconds=3)), id="stall"
                )
            self.scheduler.start()
            self.watch = reloads.WatchState(loaded=file_stamps(watched_files(config)))
            if config.metrics_listen:
                rt.metrics.serve(config.metrics_listen)
                log.info("metrics on http://%s/metrics", config.metrics_listen)
            integrity = rt.store.integrity_check()
            if integrity != "ok":
                log.error(
                    "the state database %s is damaged (integrity check: %s)", config.state_path, integrity
                )
            rt.store.daemon_started(os.getpid(), self.config_path, self.now())
            self.notifier.ready(self._status_line())
            watchdog = asyncio.create_task(self._watchdog()) if self.notifier.watchdog_interval else None
            clocks = asyncio.create_task(self._watch_clocks())
            log.info(
                "alertd started: %d feeds, %d topics, %d subscribers, delivery %s",
                len(config.feeds),
                len(watchlist.topics),
                len(config.subscribers),
                config.delivery.method,
            )
            while not self.stopping.is_set():
                waiters = [
                    asyncio.create_task(self.stopping.wait()),
                    asyncio.create_task(self.reload_requested.wait()),
                ]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                if self.reload_requested.is_set() and not self.stopping.is_set():
                    self.reload_requested.clear()
                    self.reload("SIGHUP")
            if watchdog is not None:
                watchdog.cancel()
            clocks.cancel()
            await self._shutdown()
            rt.store.daemon_stopped(self.now())
            rt.metrics.close()
        self.notifier.close()
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
        self.notifier.stopping()
        self.stopping.set()
        if self.rt is not None:
            self.rt.stopping = True  # no new delivery attempt starts; the one in flight finishes

    async def _shutdown(self) -> None:
        # Pause first and shut down last: APScheduler's asyncio executor cancels running jobs on shutdown,
        # and in-flight polls and deliveries deserve time to finish.
        assert self.rt is not None
        self.scheduler.pause()
        pending = set(self.in_flight)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
        # A delivery in flight waits for its server's reply: cut now, the message would go again on restart.
        give_up = time.monotonic() + outbox.stop_wait(self.rt.config.delivery).total_seconds() - STOP_TIMEOUT
        while pending and self.rt.delivering and time.monotonic() < give_up:
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("stop: %d unfinished steps rolled back", len(pending))
        self.scheduler.shutdown(wait=False)

    # --- jobs ----------------------------------------------------------------------------------------------

    def _track(self, step: Callable[[], Awaitable[Any]]) -> Callable[[], Coroutine[Any, Any, None]]:
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
            except StateWriteError as exc:  # nothing was written; the step runs again at its next time
                assert self.rt is not None
                if self.rt.state_problem is None:
                    log.error("%s: nothing is recorded until it can be written again", exc)
                self.rt.state_problem = str(exc)
                self.rt.metrics.state_writable.set(0)
            except Exception:
                log.exception("scheduled step failed; it will run again at its next time")
            finally:
                self.in_flight.discard(task)

        return job

    def _schedule_all(self, *, resume_because: str | None = None) -> None:
        assert self.rt is not None
        for feed in self.rt.config.feeds:
            self._schedule_feed(feed)
        self._schedule_digests(resume_because=resume_because)
        self.scheduler.add_job(
            self._track(self._drain),
            IntervalTrigger(seconds=OUTBOX_INTERVAL.total_seconds()),
            id="outbox",
            next_run_time=self.now() + timedelta(seconds=5),
            replace_existing=True,
        )
        self.scheduler.add_job(
            self._track(self._housekeeping),
            IntervalTrigger(hours=24),
            id="housekeeping",
            next_run_time=self.now() + HOUSEKEEPING_DELAY,
            replace_existing=True,
        )
        for job_id, job, seconds in (
            ("heartbeat", self._beat, HEARTBEAT_INTERVAL),
            ("watch-files", self._watch_files, WATCH_INTERVAL),
            ("status", self._report_status, STATUS_INTERVAL),
            ("state", self._retry_state, STATE_RETRY_INTERVAL),
            ("poll-requests", self._look_for_poll_requests, WATCH_INTERVAL),
        ):
            self.scheduler.add_job(job, IntervalTrigger(seconds=seconds), id=job_id, replace_existing=True)

    def _schedule_feed(self, feed: FeedConfig, *, after_poll: bool = False) -> None:
        """One job per feed, at the time :func:`alertd.polling.job_time` gives (none for a gone or paused feed:
        a reload that resumes it schedules it again)."""
        assert self.rt is not None
        state = self.rt.store.feed_state(feed.url, feed.name)
        due = polling.job_time(state, self.now(), self.rng, after_poll=after_poll, policy=self.poll_policy())
        if due is None or feed.paused:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"poll:{feed.url}")
            return
        self.scheduler.add_job(
            self._track(lambda: self._poll(feed.url)),
            DateTrigger(run_date=due),
            id=f"poll:{feed.url}",
            replace_existing=True,
        )

    def poll_policy(self) -> polling.PollPolicy:
        assert self.rt is not None
        return polling.PollPolicy.of(self.rt.config.poll)

    def _schedule_digests(self, *, resume_because: str | None = None) -> None:
        """(Re)schedule every subscriber's digest job; on start and reload, lift an SMTP delivery pause
        (the settings may have been fixed: the next drain tries once more)."""
        assert self.rt is not None
        if resume_because is not None:
            pipeline.resume_delivery(self.rt, resume_because)
        for subscriber in self.rt.config.subscribers:
            self._schedule_digest(subscriber)

    def _schedule_digest(self, subscriber: SubscriberConfig, *, not_before: datetime | None = None) -> None:
        """One job per subscriber, at the next time a flush has something for them (pipeline.next_flush_at):
        the scheduled digest, pending priority alerts once debounced, mail held by quiet hours."""
        assert self.rt is not None
        now = self.now()
        when = pipeline.next_flush_at(self.rt, subscriber, now)
        job_id = f"digest:{subscriber.email}"
        if when is None:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job_id)
            return
        self.scheduler.add_job(
            self._track(lambda: self._digest(subscriber.email)),
            DateTrigger(run_date=max(when, now, not_before or now)),
            id=job_id,
            replace_existing=True,
        )

    async def _look_for_poll_requests(self) -> None:
        """Every 2 s: answer the polls ``alertd feeds poll`` asked for, in a task of its own (a poll may take
        longer than the interval; the next look then finds it still running and leaves it be)."""
        rt = self.rt
        if (
            (self.answering is None or self.answering.done())
            and rt is not None
            and rt.store.open_poll_requests()
        ):
            self.answering = asyncio.create_task(
                self._track(lambda: pipeline.answer_poll_requests(rt, self._poll))()
            )

    async def _poll(self, url: str) -> polling.PollReport | None:
        assert self.rt is not None
        feed = next((f for f in self.rt.config.feeds if f.url == url), None)
        if feed is None:
            return None
        try:
            async with poll_slot(self.rt):
                with self.rt.metrics.poll_seconds.time():
                    report = await pipeline.poll_feed(self.rt, feed, self.now())
        finally:
            if not self.stopping.is_set():
                self._schedule_feed(feed, after_poll=True)
        self.rt.metrics.polls.labels(report.status).inc()
        if report.error_class:
            self.rt.metrics.poll_errors.labels(report.error_class).inc()
        self.rt.metrics.new_items.inc(report.new_items)
        for topic, count in report.topic_matches:
            self.rt.metrics.matches.labels(topic).inc(count)
        if report.matches and any(s.schedule.is_immediate for s in self.rt.config.subscribers):
            pipeline.flush_digests(self.rt, self.now())
            await pipeline.drain_outbox(self.rt, self.now())
        if report.matches:  # priority alerts (debounced) and mail held by quiet hours get their job
            self._schedule_digests()
        return report

    async def _digest(self, email: str) -> None:
        assert self.rt is not None
        subscriber = next((s for s in self.rt.config.subscribers if s.email == email), None)
        if subscriber is None:
            return
        failed = True
        try:
            pipeline.flush_digests(self.rt, self.now(), only=email)
            await pipeline.drain_outbox(self.rt, self.now())
            failed = False
        finally:
            # After a failure, wait a little rather than retry in a tight loop.
            self._schedule_digest(subscriber, not_before=self.now() + OUTBOX_INTERVAL if failed else None)

    async def _drain(self) -> None:
        assert self.rt is not None
        await pipeline.drain_outbox(self.rt, self.now())

    async def _housekeeping(self) -> None:
        assert self.rt is not None
        pipeline.housekeeping(self.rt, self.now())

    # --- health --------------------------------------------------------------------------------------------

    async def _beat(self) -> None:
        """The scheduler's heartbeat: the watchdog only pets systemd while this keeps advancing."""
        self.heartbeat = time.monotonic()

    async def _watchdog(self) -> None:
        """Send WATCHDOG=1 at half the interval systemd asked for, but only while the heartbeat advances.

        A stalled event loop stops both this task and the heartbeat; a scheduler that stopped running jobs
        stops the heartbeat only. Either way systemd stops hearing from us and restarts the service.
        """
        interval = self.notifier.watchdog_interval
        assert interval is not None
        while True:
            await asyncio.sleep(interval / 2)
            if time.monotonic() - self.heartbeat <= max(interval / 2, HEARTBEAT_INTERVAL * 3):
                self.notifier.watchdog()
            else:
                log.error(
                    "scheduler heartbeat stalled for %.0f s: not petting the watchdog",
                    time.monotonic() - self.heartbeat,
                )

    async def _retry_state(self) -> None:
        """While the state cannot be written, record what could not be recorded as soon as it can: delivery
        then resumes (nothing is sent in the meantime)."""
        assert self.rt is not None
        if self.rt.unrecorded and pipeline.record_unrecorded(self.rt, self.now()):
            self.notifier.status(self._status_line())

    async def _watch_clocks(self) -> None:
        """Look at the clocks twice a second: a wall-clock step reschedules every job; a stalled loop is logged.

        A step backward would leave every job weeks away (their times are wall-clock times), and one forward
        runs each missed job once (``misfire_grace_time=None``, coalesced) but leaves their next times in
        the past: either way, every job is scheduled again from the stored state, clamped.
        """
        wall, mono = time.time(), time.monotonic()
        while True:
            await asyncio.sleep(CLOCK_LOOK)
            now_wall, now_mono = time.time(), time.monotonic()
            lag = now_mono - mono - CLOCK_LOOK
            self.loop_lag = max(self.loop_lag, lag)
            if lag > LOOP_LAG_WARNING:
                log.warning("the event loop was blocked for %.1f s", lag)
            step = (now_wall - wall) - (now_mono - mono)
            if abs(step) > CLOCK_STEP and self.rt is not None and not self.stopping.is_set():
                moved = schedule.format_duration(timedelta(seconds=round(abs(step))))
                way = "forward" if step > 0 else "back"
                log.warning(
                    "the wall clock stepped %s by %s (NTP, a resumed VM?): rescheduling all", way, moved
                )
                self._schedule_all()
            wall, mono = now_wall, now_mono

    async def _report_status(self) -> None:
        assert self.rt is not None
        self.rt.metrics.loop_lag.set(max(self.loop_lag, 0.0))
        self.loop_lag = 0.0
        try:
            self.rt.store.daemon_heartbeat(self.now())
        except StateWriteError as exc:
            self.rt.state_problem = self.rt.state_problem or str(exc)
            self.rt.metrics.state_writable.set(0)
        else:
            pipeline.state_writable(self.rt)
        self.notifier.status(self._status_line())
        self.rt.metrics.outbox_pending.set(len(self.rt.store.outbox(("pending", "sending"))))
        for condition, count in health.census(feed_judgements(self.rt.config, self.rt.store)).items():
            self.rt.metrics.feeds.labels(condition).set(count)

    def _status_line(self) -> str:
        assert self.rt is not None
        return status_line(self.rt.config, self.rt.store, self.rt.state_problem)

    async def _watch_files(self) -> None:
        """Reload when the config, the watchlist or an included file changed on disk and is stable again."""
        assert self.rt is not None
        self.watch, load = reloads.watch(self.watch, file_stamps(self.watch.loaded), time.monotonic())
        if load:
            log.info("configuration files changed on disk: reloading")
            self.reload("a change on disk")

    # --- reload --------------------------------------------------------------------------------------------

    def reload(self, cause: str) -> bool:
        """Reload config and watchlist; keep the running ones if the new files are invalid, or would remove
        every topic, feed or subscriber and have not stayed so for a while (:func:`alertd.reloads.verdict`)."""
        assert self.rt is not None
        self.notifier.reloading()
        stamps = file_stamps(self.watch.loaded)
        if stamps != self.watch.seen:  # a SIGHUP that no look has seen yet: from now on, they are seen
            self.watch = reloads.WatchState(self.watch.loaded, stamps, time.monotonic())
        try:
            config, watchlist = load_all(self.config_path)
        except ConfigError as exc:
            log.error("reload failed, keeping the previous configuration (%s):\n%s", cause, exc)
            self.watch = reloads.WatchState(stamps, stamps, None)  # not again until the files change
            self.rt.store.record_reload(False, str(exc), self.now())
            self.rt.metrics.reloaded(False)
            self.notifier.ready(self._status_line())
            return False
        verdict = reloads.verdict(
            self.rt.config,
            self.rt.watchlist,
            config,
            watchlist,
            stable_for=reloads.stable_for(self.watch, time.monotonic()),
        )
        if not verdict.apply:
            if stamps != self.deferred:  # said once per version of the files, not at every look
                log.warning("reload (%s) not applied yet: %s", cause, verdict.reason)
                self.deferred = dict(stamps)
            self.notifier.ready(f"reload waiting: {verdict.reason}; {self._status_line()}")
            return False
        self._apply(config, watchlist)
        loaded = file_stamps(watched_files(config))
        self.watch = reloads.WatchState(loaded, loaded, None)
        self.rt.store.record_reload(True, None, self.now())
        self.rt.metrics.reloaded(True)
        self.notifier.ready(self._status_line())
        return True

    def _apply(self, config: Config, watchlist: Watchlist) -> None:
        assert self.rt is not None
        for line in reloads.describe_changes(self.rt.config, self.rt.watchlist, config, watchlist):
            log.info("reload: %s", line)
        old = self.rt.config
        self.rt.config = config
        self.rt.watchlist = watchlist
        self.rt.templates = load_templates(config.templates_dir)
        old_feeds = {f.url for f in old.feeds}
        new_feeds = {f.url for f in config.feeds}
        for url in old_feeds - new_feeds:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"poll:{url}")
            self.rt.layouts.forget(url)
        before = {f.url: f for f in old.feeds}
        old_policy, new_policy = polling.PollPolicy.of(old.poll), self.poll_policy()
        for feed in config.feeds:
            if feed.url not in before:
                self._schedule_feed(feed)
            elif feed != before[feed.url] or old.poll != config.poll:  # poll it when the new settings say
                pipeline.reschedule_feed(
                    self.rt, (before[feed.url], old_policy), (feed, new_policy), self.now(), self.rng
                )
                self._schedule_feed(feed)
        for subscriber in old.subscribers:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"digest:{subscriber.email}")
        pipeline.register_subscribers(self.rt, self.now())
        self._schedule_digests(resume_because="the configuration was reloaded")
        log.info(
            "configuration reloaded: %d feeds, %d topics, %d subscribers",
            len(config.feeds),
            len(watchlist.topics),
            len(config.subscribers),
        )


async def _stall_loop() -> None:
    """Block the event loop on purpose (fail point ``stall_loop``): tests watch the watchdog go quiet."""
    time.sleep(failpoint.STALL_SECONDS)  # noqa: ASYNC251 - blocking is the point
