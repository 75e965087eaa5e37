#!/usr/bin/env python3
"""One item with a 9 MB summary among 20 normal ones, beside the same 20 items alone, measured in the same run.

    /work/venv/bin/python bench/bigitem.py            # both parse paths, median of 3 runs
    /work/venv/bin/python bench/bigitem.py --runs 1   # a smoke run

Worker side: each parse runs in a fresh process under the parse worker's address-space limit (RELIABILITY F11),
through ``parse_in_worker`` as the daemon's ParserPool runs it. After a warm-up parse (feedparser's lazy imports),
one timed parse, then the same parse under tracemalloc for the peak it allocates; the process's peak RSS (VmHWM:
the interpreter and the modules this script imports are ~49 MiB of it) and the size of the pickled ParsedFeed
sent back. ``fast`` is the expat fast path (the document is plain UTF-8 RSS 2.0), ``feedparser`` the same
document with the fast path switched off.

Daemon side, in this process: what its event loop does with the result — unpickle it, identify the entries
(``identify.make_items`` extracts each summary's text) and match each item against config/watchlist.toml —
timed, then under tracemalloc. Items are BFM's (../shared/data/bfm/items.jsonl) when present, else generated.
To measure the code before a change, run this file from a copy of that version's tree (``git archive``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pickle
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertd import identify, parse  # noqa: E402
from alertd.match import match_item  # noqa: E402
from alertd.models import ParsedFeed  # noqa: E402
from alertd.watchlist import Watchlist, load_watchlist  # noqa: E402
from tests.feedserver import make_rss  # noqa: E402

BFM = ROOT.parent / "shared" / "data" / "bfm" / "items.jsonl"
URL = "https://www.bfmtv.com/rss/economie/"
XML = "application/rss+xml; charset=utf-8"
BIG_SUMMARY = 9_000_000
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def normal_items(count: int = 20) -> list[dict[str, Any]]:
    if BFM.exists():
        with BFM.open(encoding="utf-8") as lines:
            rows = [json.loads(next(lines)) for _ in range(count)]
        return [
            {
                "title": row["title"],
                "link": row["link"],
                "guid": row["link"],
                "lede": row["summary"],
                "image": row.get("image"),
                "pub_date": row["published"],
            }
            for row in rows
        ]
    return [
        {
            "title": f"Titre {n}",
            "link": f"https://x.test/{n}",
            "guid": f"https://x.test/{n}",
            "lede": "Texte. " * 30,
        }
        for n in range(count)
    ]


def documents() -> tuple[bytes, bytes]:
    """(the 20 items, the 20 items with a 9 MB summary item in the middle)."""
    items = normal_items()
    paragraph = "<p>" + "Le cognac charentais face aux droits de douane chinois. " * 10 + "</p>"
    big = {
        "title": "Un article démesuré",
        "link": "https://www.bfmtv.com/economie/enorme.html",
        "guid": "https://www.bfmtv.com/economie/enorme.html",
        "description": paragraph * (BIG_SUMMARY // len(paragraph)),
    }
    return make_rss(items), make_rss([*items[:10], big, *items[10:]])


def worker(body: bytes, fast: bool, connection: Connection) -> None:
    """Parse ``body`` as a parse worker does; send back (seconds, peak allocated, peak RSS, pickled result)."""
    resource.setrlimit(resource.RLIMIT_AS, (parse.WORKER_MEMORY_LIMIT, parse.WORKER_MEMORY_LIMIT))
    if not fast:
        parse.parse_fast = lambda *args: None  # type: ignore[assignment]
    parse.parse_in_worker(make_rss(normal_items(2)), XML, URL)  # warm-up: lazy imports
    started = time.perf_counter()
    result = parse.parse_in_worker(body, XML, URL)
    elapsed = time.perf_counter() - started
    rss = peak_rss()
    del result
    tracemalloc.start()
    result = parse.parse_in_worker(body, XML, URL)
    allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    connection.send((elapsed, allocated, rss, pickle.dumps(result)))


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM (ru_maxrss would carry the parent's peak over the spawn's exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_the_daemon(pickled: bytes, watchlist: Watchlist) -> ParsedFeed:
    """What the daemon's event loop does with a parse: unpickle, identify (extract the text), match."""
    feed = pickle.loads(pickled)  # our own worker's output, as ProcessPoolExecutor does
    if not isinstance(feed, ParsedFeed):
        raise SystemExit(f"the worker did not parse the document: {feed}")
    keys = identify.entry_keys(feed.entries, URL)
    for item in identify.make_items(feed.entries, keys, URL, "BFM", frozenset(), NOW):
        match_item(watchlist, item.title, item.summary_text, item.feed_name, item.feed_tags, item.link or "")
    return feed


def measure(body: bytes, fast: bool, watchlist: Watchlist) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=worker, args=(body, fast, sending))
    process.start()
    elapsed, allocated, rss, pickled = receiving.recv()
    process.join()
    started = time.perf_counter()
    feed = in_the_daemon(pickled, watchlist)
    daemon = time.perf_counter() - started
    tracemalloc.start()
    in_the_daemon(pickled, watchlist)
    daemon_allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "parse s": elapsed,
        "allocated MiB": allocated / 2**20,
        "peak RSS MiB": rss / 2**20,
        "pickled KiB": len(pickled) / 1024,
        "daemon s": daemon,
        "daemon alloc MiB": daemon_allocated / 2**20,
        "longest summary KiB": max(len(entry.summary_html) for entry in feed.entries) / 1024,
    }


def figures(body: bytes, fast: bool, runs: int, watchlist: Watchlist) -> dict[str, float]:
    samples = [measure(body, fast, watchlist) for _ in range(runs)]
    return {name: statistics.median(sample[name] for sample in samples) for name in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="fresh worker processes per figure (median)")
    args = parser.parse_args()
    watchlist = load_watchlist(ROOT / "config" / "watchlist.toml")
    normal, big = documents()
    print(f"documents: normal {len(normal):,} bytes, big {len(big):,} bytes; median of {args.runs} runs")
    for fast in (True, False):
        path = "fast" if fast else "feedparser"
        with_big = figures(big, fast, args.runs, watchlist)
        alone = figures(normal, fast, args.runs, watchlist)
        print(f"\n{path + ' path':<22} {'with the big item':>17} {'20 items alone':>15} {'ratio':>8}")
        for name in with_big:
            ratio = with_big[name] / alone[name] if alone[name] else float("inf")
            print(f"  {name:<20} {with_big[name]:>17.3f} {alone[name]:>15.3f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
