#!/usr/bin/env python3
"""Polling at scale: alertd's real pipeline against a loopback farm of feeds, beside a sequential baseline.

    /work/venv/bin/python bench/poll.py                      # 1000 feeds x 50 items, 100 ms latency
    /work/venv/bin/python bench/poll.py --feeds 200 --quick  # a smoke run
    /work/venv/bin/python bench/poll.py --concurrency 16,32,64,100   # compare concurrency settings

The farm is ../shared/tools/feedfarm.py (a subprocess on a free 127.0.0.1 port), or ``--farm own``: bench/farm.py,
the same farm except that an item's bytes never change once published (the shared farm re-dates every item at
each tick, which hides what parsing only the unknown items saves); bench/farm.py is also used when ../shared is
absent. Each feed gains one item per farm tick; the bench times its cycles to the ticks:

- cold:   every feed polled for the first time (all items new: parse, identify, store; the first poll seeds);
- steady: one tick later, each feed has exactly one new item (200, parse, identify, match, store);
- idle:   again within the same tick: every feed answers 304 (no parse).

alertd side: ``pipeline.poll_feed`` over a Runtime built by ``runtime.open_runtime`` (real Store in a temp dir,
real ParserPool, real httpx client), all feeds gathered under the ``[poll] concurrency`` semaphore as
``alertd run --once`` does. Baseline: a sequential loop, httpx sync client then ``feedparser.parse`` of the
body, keeping ETags; it runs in its own process on the first ``--baseline-feeds`` feeds and its time is
extrapolated linearly to all feeds (said so in the output).

Printed per cycle: wall time, CPU time (process + parse workers), peak RSS (process; workers), feeds/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED_FARM = ROOT.parent / "shared" / "tools" / "feedfarm.py"
CYCLES = ("cold", "steady", "idle")
TARGETS = {"cold": 10.0, "idle": 2.0}
RSS_TARGET_MB = 250.0


@dataclass
class Figures:
    wall: float
    cpu: float
    rss_mb: float
    feeds: int
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        return self.feeds / self.wall if self.wall else 0.0


# --- the farm -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def farm(
    feeds: int, items: int, latency: float, tick: float, *, own: bool = False
) -> Iterator[tuple[int, float]]:
    """Start the farm; yield (port, the farm's start time as time.time())."""
    port = free_port()
    script = SHARED_FARM if SHARED_FARM.exists() and not own else Path(__file__).with_name("farm.py")
    args = [sys.executable, str(script), "--port", str(port), "--feeds", str(feeds), "--items", str(items)]
    args += ["--latency", str(latency), "--tick", str(tick)]
    started = time.time()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None:
                raise SystemExit(f"farm exited: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.1)
        yield port, started
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_tick(started: float, tick: float, generation: int) -> None:
    """Sleep until the farm is well into ``generation`` (one new item per feed per generation)."""
    target = started + generation * tick + 1.0
    delay = target - time.time()
    if delay > 0:
        time.sleep(delay)


# --- measurement helpers ----------------------------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- alertd ---------------------------------------------------------------------------------------------------


def write_config(folder: Path, port: int, feeds: int, concurrency: int) -> Path:
    (folder / "watchlist.toml").write_text((ROOT / "config" / "watchlist.toml").read_text(encoding="utf-8"))
    entries = "".join(
        f'[[feed]]\nname = "Farm {i}"\nurl = "http://127.0.0.1:{port}/feed/{i}.xml"\n\n' for i in range(feeds)
    )
    config = folder / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            watchlist = "watchlist.toml"
            [state]
            path = "state/alertd.sqlite3"
            [poll]
            concurrency = {concurrency}
            [delivery]
            method = "maildir"
            maildir = "mail"
            """
        )
        + entries,
        encoding="utf-8",
    )
    return config


async def alertd_cycles(
    config_path: Path,
    started: float,
    tick: float,
    baseline: subprocess.Popen[str] | None,
    *,
    incremental: bool = True,
) -> tuple[dict[str, Figures], dict[str, Figures]]:
    """Run the three alertd cycles (and ask the baseline process for its three, in the same ticks)."""
    from alertd import pipeline, polling
    from alertd.incremental import Layouts
    from alertd.loader import load_all
    from alertd.runtime import open_runtime

    config, watchlist = load_all(config_path)
    ours: dict[str, Figures] = {}
    theirs: dict[str, Figures] = {}
    async with open_runtime(config, watchlist, dict(os.environ)) as rt:
        rt.layouts = Layouts(enabled=incremental)
        limit = asyncio.Semaphore(config.poll.concurrency)

        async def one(feed: Any) -> polling.PollReport:
            async with limit:
                return await pipeline.poll_feed(rt, feed, datetime.now(UTC))

        for cycle in CYCLES:
            if cycle == "steady":
                wait_for_tick(started, tick, 1)
            workers_before = {pid: _proc_cpu(pid) for pid in rt.parser.worker_pids()}
            cpu0, t0 = _self_cpu(), time.perf_counter()
            reports = await asyncio.gather(*(one(feed) for feed in config.feeds))
            wall = time.perf_counter() - t0
            cpu = _self_cpu() - cpu0
            pids = rt.parser.worker_pids()
            cpu += sum(_proc_cpu(pid) - workers_before.get(pid, 0.0) for pid in pids)
            statuses: dict[str, int] = {}
            for report in reports:
                statuses[report.status] = statuses.get(report.status, 0) + 1
            worker_rss = max((_proc_peak_rss_mb(pid) for pid in pids), default=0.0)
            figures = Figures(wall, cpu, _self_peak_rss_mb(), len(reports), statuses)
            figures.statuses["worker_rss_mb"] = round(worker_rss)
            ours[cycle] = figures
            print(f"  alertd   {cycle:6} {wall:7.2f} s  {statuses}", file=sys.stderr, flush=True)
            if baseline is not None:
                theirs[cycle] = ask_baseline(baseline, cycle)
    return ours, theirs


# --- the sequential baseline (its own process) ------------------------------------------------------------


def ask_baseline(process: subprocess.Popen[str], cycle: str) -> Figures:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(cycle + "\n")
    process.stdin.flush()
    answer = json.loads(process.stdout.readline())
    figures = Figures(answer["wall"], answer["cpu"], answer["rss_mb"], answer["feeds"], answer["statuses"])
    print(f"  baseline {cycle:6} {figures.wall:7.2f} s  {figures.statuses}", file=sys.stderr, flush=True)
    return figures


def baseline_worker(port: int, feeds: int) -> None:
    """Serve cycles asked on stdin: a sequential fetch-then-feedparser loop over ``feeds`` farm feeds."""
    import io

    import feedparser
    import httpx

    etags: dict[int, str] = {}
    with httpx.Client(timeout=30) as client:
        for line in sys.stdin:
            cpu0, t0 = _self_cpu(), time.perf_counter()
            statuses: dict[str, int] = {}
            for i in range(feeds):
                headers = {"If-None-Match": etags[i]} if i in etags else {}
                response = client.get(f"http://127.0.0.1:{port}/feed/{i}.xml", headers=headers)
                if response.status_code == 200:
                    document = feedparser.parse(io.BytesIO(response.content))
                    statuses["parsed_entries"] = statuses.get("parsed_entries", 0) + len(document.entries)
                if "etag" in response.headers:
                    etags[i] = response.headers["etag"]
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            answer = {
                "cycle": line.strip(),
                "wall": time.perf_counter() - t0,
                "cpu": _self_cpu() - cpu0,
                "rss_mb": _self_peak_rss_mb(),
                "feeds": feeds,
                "statuses": statuses,
            }
            print(json.dumps(answer), flush=True)


# --- report ---------------------------------------------------------------------------------------------------


def report(ours: dict[str, Figures], theirs: dict[str, Figures], feeds: int, baseline_feeds: int) -> bool:
    scale = feeds / baseline_feeds
    print(
        f"\n{feeds} feeds; baseline measured on {baseline_feeds} feeds, its wall and CPU times extrapolated "
        f"x{scale:g} (linear: it is sequential)\n"
    )
    print(f"{'cycle':7} {'':8} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'feeds/s':>9}   speed-up")
    ok = True
    for cycle in CYCLES:
        mine = ours[cycle]
        workers = mine.statuses.pop("worker_rss_mb", 0)
        rss = f"{mine.rss_mb:.0f}+{workers}w"
        print(
            f"{cycle:7} {'alertd':8} {mine.wall:8.2f} {mine.cpu:8.2f} {rss:>12} {mine.rate:9.0f}   "
            f"{json.dumps(mine.statuses)}"
        )
        if cycle in theirs:
            base = theirs[cycle]
            wall, cpu = base.wall * scale, base.cpu * scale
            ratio = wall / mine.wall if mine.wall else float("inf")
            print(
                f"{'':7} {'baseline':8} {wall:8.2f} {cpu:8.2f} {base.rss_mb:12.0f} {feeds / wall:9.0f}   "
                f"x{ratio:.1f} (alertd faster)"
            )
            ok = ok and ratio >= 10
        target = TARGETS.get(cycle)
        if target is not None:
            ok = ok and mine.wall <= target
            print(f"{'':7} target   wall <= {target:g} s: {'met' if mine.wall <= target else 'MISSED'}")
        worst = mine.rss_mb + workers * 2  # two parse workers
        ok = ok and worst <= RSS_TARGET_MB
    print(
        f"\npeak RSS target <= {RSS_TARGET_MB:g} MB (process + parse workers): "
        f"{'met' if ok or all(f.rss_mb <= RSS_TARGET_MB for f in ours.values()) else 'MISSED'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--latency", type=float, default=100.0, help="farm latency per response, ms")
    parser.add_argument("--baseline-feeds", type=int, default=100)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--concurrency", default="", help="[poll] concurrency (comma list to compare)")
    parser.add_argument("--tick", type=float, default=0.0, help="farm tick, s (default: fitted to the run)")
    parser.add_argument("--quick", action="store_true", help="200 feeds, 20 baseline feeds")
    parser.add_argument(
        "--farm", choices=("shared", "own"), default="shared", help="../shared's feedfarm.py or bench/farm.py"
    )
    parser.add_argument(
        "--no-incremental", action="store_true", help="parse whole documents (no alertd.incremental)"
    )
    parser.add_argument("--baseline-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker, args.baseline_feeds)
        return 0
    if args.quick:
        args.feeds, args.baseline_feeds = 200, 20
    from alertd.config import PollConfig

    settings = [int(c) for c in args.concurrency.split(",") if c] or [PollConfig().concurrency]
    all_ok = True
    for concurrency in settings:
        all_ok = run(args, concurrency) and all_ok
    return 0 if all_ok else 1


def run(args: argparse.Namespace, concurrency: int) -> bool:
    baseline_feeds = min(args.baseline_feeds, args.feeds)
    per_baseline_cycle = baseline_feeds * (args.latency / 1000 + 0.03)
    # One tick must hold alertd's steady and idle cycles and two baseline cycles (the gen must not change).
    alertd_budget = 45.0 * args.feeds / 1000
    tick = args.tick or (alertd_budget + (0 if args.no_baseline else 2.5 * per_baseline_cycle)) + 10
    own = args.farm == "own" or not SHARED_FARM.exists()
    print(
        f"concurrency {concurrency}: {'bench/farm.py' if own else 'shared feedfarm.py'} {args.feeds} feeds x "
        f"{args.items} items, {args.latency:g} ms latency, tick {tick:g} s, "
        f"incremental parsing {'off' if args.no_incremental else 'on'}",
        file=sys.stderr,
        flush=True,
    )
    with (
        farm(args.feeds, args.items, args.latency, tick, own=own) as (port, started),
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = write_config(Path(tmp), port, args.feeds, concurrency)
        baseline = None
        if not args.no_baseline:
            baseline = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--baseline-worker",
                    str(port),
                    "--baseline-feeds",
                    str(baseline_feeds),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        try:
            cycles = alertd_cycles(config, started, tick, baseline, incremental=not args.no_incremental)
            ours, theirs = asyncio.run(cycles)
        finally:
            if baseline is not None:
                assert baseline.stdin is not None
                baseline.stdin.close()
                baseline.wait(timeout=30)
    print(f"\n=== alertd poll benchmark, [poll] concurrency = {concurrency}, {os.cpu_count()} CPUs ===")
    return report(ours, theirs, args.feeds, baseline_feeds)


if __name__ == "__main__":
    sys.exit(main())
