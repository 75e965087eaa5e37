#!/usr/bin/env python3
r"""Cost per item of a catastrophic-backtracking regex term: RE2 (alertd now) against Python's ``re`` (before).

    /work/venv/bin/python bench/regex.py                # Python's re gets 30 s per input, in a child process
    /work/venv/bin/python bench/regex.py --timeout 60

The term is ``(\w+\s?)+pdd``, which passed ``alertd check-config`` and took seconds per item on the event loop
when regex terms ran on Python's ``re``. Two items: a 26-letter title ``aaaaaaaaaaaaaaaaaaaaaaaaaa`` and a
5,000-character summary of ordinary words (none of them ``pdd``). A regex term runs on the item's normalised text
(folded words joined by single spaces), so both are one long run of word characters and spaces: the worst case
for backtracking.

* **before**: ``re.compile(term).finditer(normalised)``, what termindex did, in a child process killed after
  ``--timeout`` seconds; the growth per letter is measured on shorter titles in the same child;
* **after**: alertd's own path, ``match_item`` over a one-topic watchlist holding the term (RE2), and the RE2
  search alone;
* **baseline**, same run, same items: a benign term ``pdd\b`` on Python's ``re`` and through ``match_item``.

Every figure is the best of several runs (the machine is shared: the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertd.match import match_item  # noqa: E402
from alertd.normalise import tokenise  # noqa: E402
from alertd.regex import compile_regex  # noqa: E402
from alertd.tomlsource import loads  # noqa: E402
from alertd.watchlist import Watchlist, compile_watchlist  # noqa: E402

PATHOLOGICAL = r"(\w+\s?)+pdd"
BENIGN = r"pdd\b"
TITLE = "a" * 26
SHORT_TITLES = (16, 18, 20, 22)
WORDS = (
    *("marché", "export", "commerce", "chine", "france", "alibaba", "vente", "croissance", "prix"),
    *("entreprise", "banque", "bourse", "action", "résultat", "client", "usine", "contrat", "douane"),
)


def summary_text(length: int = 5000) -> str:
    """Ordinary words (no ``pdd``) up to ``length`` characters."""
    rng = random.Random(0)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:length].rstrip()


def best_time(run: Callable[[], object], repeats: int = 5, budget: float = 0.2) -> float:
    """Seconds per call: the best of ``repeats`` batches, each sized to take about ``budget`` seconds."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(budget / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def stdlib_child(name: str) -> None:
    """In the child process: time Python's re on one input and print the seconds (the parent may kill us)."""
    program = re.compile(PATHOLOGICAL)
    if name == "growth":
        for length in SHORT_TITLES:
            start = time.perf_counter()
            list(program.finditer("a" * length))
            print(length, time.perf_counter() - start, flush=True)
        return
    text = normalised(TITLE if name == "title" else summary_text())
    start = time.perf_counter()
    list(program.finditer(text))
    print(time.perf_counter() - start, flush=True)


def normalised(text: str) -> str:
    """What a regex term runs on: the folded words of ``text`` joined by single spaces (as termindex does)."""
    return " ".join(tokenise(text).words)


def stdlib_pathological(name: str, timeout: float) -> tuple[str, float | None]:
    """Python's re on the pathological term in a child process: its output, or None seconds if killed."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return "", None
    return done.stdout, float(done.stdout.split()[-1])


def one_term_watchlist(pattern: str) -> Watchlist:
    text = f"[[topic]]\nid = 't'\nname = 'T'\nany = [{{ regex = '{pattern}' }}]\n"
    return compile_watchlist(loads(text, Path("bench.toml")), source=text)


def microseconds(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds Python's re gets per input")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stdlib_child(args.child)
        return

    summary = summary_text()
    items = {"26-letter title": (TITLE, ""), f"{len(summary):,}-character summary": ("", summary)}
    pathological, benign = one_term_watchlist(PATHOLOGICAL), one_term_watchlist(BENIGN)
    re2_term, stdlib_benign = compile_regex(PATHOLOGICAL), re.compile(BENIGN)

    print(f"term {PATHOLOGICAL!r}; baseline term {BENIGN!r}; Python {sys.version.split()[0]}\n")
    growth, _ = stdlib_pathological("growth", args.timeout)
    for line in growth.splitlines():
        length, seconds = line.split()
        print(f"  before, Python's re, {length}-letter title: {float(seconds):.3f} s")
    print()
    header = ("item", "before: re", "after: alertd", "after: RE2 search", "baseline: re", "baseline: alertd")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    ratios = []
    for (label, (title, text)), child in zip(items.items(), ("title", "summary"), strict=True):
        folded = normalised(title or text)
        encoded = folded.encode()
        _, before = stdlib_pathological(child, args.timeout)
        after = best_time(lambda t=title, s=text: match_item(pathological, t, s))
        search = best_time(lambda e=encoded: list(re2_term.spans(e)))
        base_re = best_time(lambda n=folded: list(stdlib_benign.finditer(n)))
        base_alertd = best_time(lambda t=title, s=text: match_item(benign, t, s))
        shown = f"{before:.2f} s" if before is not None else f"> {args.timeout:g} s (killed)"
        row = (label, shown, microseconds(after), microseconds(search), microseconds(base_re))
        print(" | ".join((*row, microseconds(base_alertd))))
        ratios.append((label, before, after, base_alertd, base_re))
    print()
    for label, before, after, base_alertd, base_re in ratios:
        speedup = f"{before / after:,.0f}x" if before is not None else f"> {args.timeout / after:,.0f}x"
        print(
            f"{label}: before/after {speedup}; after is {after / base_alertd:.2f}x the benign term through "
            f"alertd and {after / base_re:.1f}x the benign term on Python's re alone"
        )


if __name__ == "__main__":
    main()
