"""Turn fetched bytes and response headers into a :class:`~alertd.models.ParsedFeed`.

Plain, well-formed UTF-8 RSS 2.0 first goes through :mod:`alertd.fastparse` (expat, ~5x cheaper than feedparser,
equivalent on what it accepts, see its docstring and tests/test_fastparse.py); everything it refuses goes to
feedparser. feedparser only ever receives ``io.BytesIO(body)`` (RELIABILITY F1): never a URL, a path or a ``str``, so it can
neither fetch anything nor read a file. Its ``bozo`` flag is judged by an explicit policy:

- benign: ``CharacterEncodingOverride`` / ``NonXMLContentType`` on a recognisable feed, or any recoverable XML
  error in a document that still yielded entries -> the feed is used and ``ParsedFeed.warning`` says why;
- fatal: no entries and a bozo error (an HTML page, garbage, a truncated body), or no entries and no RSS/Atom
  root at all -> :class:`~alertd.errors.ParseError`.

One item must not cost the feed its other items (docs/polling.md, "Poisoned items"). Both paths read the bytes
after :func:`~alertd.cleanup.clean_char_refs` (a reference to a character XML does not allow becomes U+FFFD:
feedparser raised in ``chr()`` on ``&#xD800;``) and cap every field with :func:`~alertd.cleanup.capped`, in
the worker, so a 9 MB summary never reaches the daemon. An entry feedparser gave that fails to convert is
dropped; the fast path refuses such a document instead. Each of these adds a line to ``ParsedFeed.notices``.

feedparser can spin for a long time on crafted input (a 64 KB ``<author>`` takes seconds to minutes in its e-mail
regex), so the daemon parses in :class:`ParserPool`: worker processes with a wall-clock limit past which the
worker is killed, and an address-space limit (F11). :func:`parse_feed` itself is pure and synchronous: it is what
a worker runs. It reads no HTTP headers: the fetch translated the response into a content type and a base URL.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import feedparser
from feedparser.urls import make_safe_absolute_uri

from alertd.cleanup import capped, clean_char_refs
from alertd.errors import ParseError
from alertd.fastparse import parse_fast
from alertd.fastparse import plain_text as _plain_text
from alertd.fastparse import text_or_none as _text
from alertd.fastparse import ttl_minutes as _ttl_minutes
from alertd.models import Entry, ParsedFeed

WORKER_MEMORY_LIMIT = 512 * 1024 * 1024
"""Address-space limit of a parse worker, in bytes (RELIABILITY F11)."""

_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_DROP_NOTICES = 5
"""Items dropped that are named one by one in the notices; the rest are counted."""


def parse_feed(body: bytes, content_type: str | None, base_url: str) -> ParsedFeed:
    """Parse a feed document; raise ParseError when the bytes are not a usable feed.

    ``content_type`` and ``base_url`` are what the fetch translated from the response
    (``FetchResult.content_type``, ``FetchResult.base_url``). This is what a parse worker runs.
    """
    headers = _response_headers(content_type, base_url)
    fast = parse_fast(body, content_type, _base_uri(headers))
    if fast is not None:
        return fast
    clean = clean_char_refs(body)
    document = feedparser.parse(io.BytesIO(clean.body), response_headers=headers)
    raw_entries = document.get("entries", [])
    entries, dropped = _entries(raw_entries)
    judgement = _judge_bozo(document, has_entries=bool(raw_entries))
    if judgement.fatal:
        raise ParseError(base_url, judgement.message)
    channel = document.get("feed", {})
    feed = ParsedFeed(
        title=_plain_text(channel.get("title")) or None,
        link=_text(channel.get("link")),
        entries=entries,
        ttl_minutes=_ttl_minutes(channel.get("ttl")),
        warning=judgement.message or None,
        notices=clean.notices + dropped,
    )
    return capped(feed)


def parse_in_worker(body: bytes, content_type: str | None, base_url: str) -> ParsedFeed | str:
    """The worker entry point: the parsed feed, or a description of why the bytes are not a feed. Never raises."""
    try:
        return parse_feed(body, content_type, base_url)
    except ParseError as exc:
        return exc.detail
    except MemoryError:
        return "parse worker memory limit exceeded"
    except Exception as exc:  # a feedparser bug on hostile input must not take the worker down
        return f"parser failed: {type(exc).__name__}: {exc}"


def _response_headers(content_type: str | None, base_url: str) -> dict[str, str]:
    """What feedparser is told of the response: the media type, and where relative links resolve."""
    headers = {"content-location": base_url}
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


def base_uri(base_url: str) -> str:
    """The base URI relative links of a document resolve against, as feedparser computes it."""
    return _base_uri(_response_headers(None, base_url))


def parse_fast_in_worker(body: bytes, content_type: str | None, base_url: str) -> ParsedFeed | None:
    """The worker entry point for the fast path alone: None when it refuses the document. Never raises."""
    try:
        return parse_fast(body, content_type, base_uri(base_url))
    except Exception:  # the caller parses the whole document the usual way
        return None


def _base_uri(headers: Mapping[str, str]) -> str:
    """The base URI feedparser resolves relative links against when given a stream (feedparser api.py)."""
    content_location = headers.get("content-location", "")
    return str(make_safe_absolute_uri("", content_location) or make_safe_absolute_uri(content_location))


class _Judgement:
    def __init__(self, message: str = "", *, fatal: bool = False) -> None:
        self.message = message
        self.fatal = fatal


def _judge_bozo(document: Any, *, has_entries: bool) -> _Judgement:
    """Apply the bozo policy (see the module docstring)."""
    is_feed = has_entries or bool(document.get("version"))
    if not document.get("bozo"):
        return _Judgement() if is_feed else _Judgement("not a feed: no RSS or Atom document", fatal=True)
    error = document.get("bozo_exception")
    described = f"{type(error).__name__}: {error}"
    if isinstance(error, _BENIGN_BOZO) and is_feed:
        return _Judgement(described)
    if has_entries:
        return _Judgement(f"recovered from {described}")
    return _Judgement(f"not a feed: {described}", fatal=True)


def _entries(raw_entries: Sequence[Any]) -> tuple[tuple[Entry, ...], tuple[str, ...]]:
    """The entries feedparser gave, converted, and the notices for those that failed to: they are dropped, the
    feed keeps the others."""
    entries: list[Entry] = []
    failures: list[str] = []
    for position, raw in enumerate(raw_entries, 1):
        try:
            entries.append(_entry(raw))
        except MemoryError:
            raise
        except Exception as exc:  # one entry feedparser's output or our code cannot convert
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            failures.append(f"item {position} dropped: {reason[:200]}")
    if len(failures) > _DROP_NOTICES:
        failures[_DROP_NOTICES:] = [f"{len(failures) - _DROP_NOTICES} more items dropped"]
    return tuple(entries), tuple(failures)


def _entry(raw: Any) -> Entry:
    return Entry(
        guid=_text(raw.get("id")),
        link=_text(raw.get("link")),
        title=_plain_text(raw.get("title")),
        summary_html=_summary_html(raw),
        published=_published(raw),
        author=_text(raw.get("author")),
    )


def _summary_html(raw: Any) -> str:
    """The richest HTML body: the first ``content`` value when longer than the summary."""
    summary = raw.get("summary")
    summary = summary if isinstance(summary, str) else ""
    contents = raw.get("content") or []
    content = contents[0].get("value") if contents else None
    if isinstance(content, str) and len(content) > len(summary):
        return content
    return summary


def _published(raw: Any) -> datetime | None:
    """Published (else updated) time as an aware UTC datetime; feedparser normalises to UTC struct_time."""
    for key in ("published_parsed", "updated_parsed"):
        parsed = raw.get(key)
        if parsed:
            try:
                year, month, day, hour, minute, second = parsed[:6]
                return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


class ParserPool:
    """Parses feeds in worker processes with a wall-clock limit, so the event loop never waits on feedparser.

    A parse that exceeds its time limit has its worker killed (the whole pool is replaced: concurrent.futures
    cannot tell which worker runs which task; parses that were running in the killed pool are retried once).
    Workers run with an address-space limit. At most ``max_workers`` parses run at once; the time limit starts
    when a worker is free, not while waiting for one.
    """

    def __init__(
        self, max_workers: int | None = None, *, memory_limit: int | None = WORKER_MEMORY_LIMIT
    ) -> None:
        self._max_workers = max_workers or os.cpu_count() or 1
        self._memory_limit = memory_limit
        self._slots = asyncio.Semaphore(self._max_workers)
        self._executor = self._new_executor()

    async def parse(
        self, body: bytes, content_type: str | None, base_url: str, *, time_limit: float = 10.0
    ) -> ParsedFeed:
        """:func:`parse_feed` in a worker; raise ParseError if not a feed, on timeout, or if the worker dies."""
        async with self._slots:
            outcome = await self._run(parse_in_worker, body, content_type, base_url, time_limit)
        if isinstance(outcome, str):
            raise ParseError(base_url, outcome)
        assert outcome is not None
        return outcome

    async def parse_fast(
        self, body: bytes, content_type: str | None, base_url: str, *, time_limit: float = 10.0
    ) -> ParsedFeed | None:
        """The fast path alone, in a worker: None when it refuses the document, or on any failure."""
        try:
            async with self._slots:
                outcome = await self._run(parse_fast_in_worker, body, content_type, base_url, time_limit)
        except ParseError:
            return None
        return outcome if isinstance(outcome, ParsedFeed) else None

    async def _run(
        self,
        function: Callable[[bytes, str | None, str], ParsedFeed | str | None],
        body: bytes,
        content_type: str | None,
        base_url: str,
        time_limit: float,
    ) -> ParsedFeed | str | None:
        url = base_url
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        for attempt in (1, 2):
            executor = self._executor
            future: Future[ParsedFeed | str | None] = executor.submit(function, body, content_type, base_url)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), deadline - loop.time())
            except asyncio.TimeoutError:
                self._replace(executor)
                raise ParseError(url, "parse time limit exceeded") from None
            except BrokenProcessPool as exc:
                self._replace(executor)
                if attempt == 2 or loop.time() >= deadline:
                    raise ParseError(url, "parse worker died") from exc
        raise AssertionError("unreachable")

    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the current workers (for logs and tests)."""
        return tuple(p.pid for p in (self._executor._processes or {}).values() if p.pid is not None)

    def close(self) -> None:
        """Stop every worker now, busy or not."""
        _kill(self._executor)

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: workers never inherit the daemon's threads or locks; preloading makes them start fast.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["alertd.parse"])
        return ProcessPoolExecutor(
            max_workers=self._max_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._memory_limit, os.getpid()),
        )

    def _replace(self, executor: ProcessPoolExecutor) -> None:
        if self._executor is executor:
            self._executor = self._new_executor()
        _kill(executor)


def _kill(executor: ProcessPoolExecutor) -> None:
    """Kill the executor's workers (a spinning regex ignores polite requests) and shut it down."""
    # ProcessPoolExecutor has no public way to reach its processes.
    processes = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()  # the executor's manager thread notices and joins them


def _init_worker(limit: int | None, daemon_pid: int) -> None:
    """Worker initializer: die with the daemon, and cap the address space against hostile documents."""
    _exit_when_gone(daemon_pid)
    if limit is None:
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _exit_when_gone(daemon_pid: int) -> None:
    """Exit this worker as soon as the daemon process is gone, even if it was SIGKILLed.

    A worker's parent is the forkserver, and workers hold both ends of the executor's queues and the
    forkserver's liveness pipe: nothing would ever tell them (or the forkserver) that the daemon died, and
    they would linger forever holding the daemon's stdout. A thread waits on a pidfd (Linux ≥ 5.3) for the
    daemon's exit, else polls once a second.
    """

    def wait() -> None:
        try:
            pidfd = os.pidfd_open(daemon_pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while True:
                try:
                    os.kill(daemon_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=wait, name="exit-with-daemon", daemon=True).start()
