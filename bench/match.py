#!/usr/bin/env python3
"""Matcher throughput, beside a naive per-term regex loop measured in the same run.

    /work/venv/bin/python bench/match.py            # both benchmarks
    /work/venv/bin/python bench/match.py --quick    # fewer items, for a smoke run

(a) the default watchlist (config/watchlist.toml) over the BFM corpus in ../shared/data/bfm/items.jsonl
    (skipped when ../shared is absent);
(b) a synthetic 500-topic x 20-term watchlist (words and two-word phrases drawn from the corpus, or from a
    built-in vocabulary without it).

Each figure is the best of several runs on one core (the machine is shared; the best run is the one least
disturbed). Targets: (a) >= 20,000 items/s; (b) >= 10x the naive loop.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertd.conditions import all_terms  # noqa: E402
from alertd.match import match_item  # noqa: E402
from alertd.tomlsource import loads  # noqa: E402
from alertd.watchlist import Watchlist, compile_watchlist, load_watchlist  # noqa: E402

ITEMS = ROOT.parent / "shared" / "data" / "bfm" / "items.jsonl"
WATCHLIST = ROOT / "config" / "watchlist.toml"

Item = tuple[str, str, str, str]  # title, summary, feed, link


def load_items() -> list[Item]:
    with ITEMS.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [
        (r.get("title") or "", r.get("summary") or "", r.get("feed") or "", r.get("link") or "") for r in rows
    ]


def synthetic_items(count: int, rng: random.Random) -> list[Item]:
    words = [
        *("marché", "export", "commerce", "chine", "france", "alibaba", "vente", "croissance"),
        *("prix", "entreprise", "banque", "bourse", "action", "résultat", "client", "usine"),
        *("contrat", "livraison", "douane"),
    ]
    return [
        (" ".join(rng.choices(words, k=10)), " ".join(rng.choices(words, k=50)), "feed", "")
        for _ in range(count)
    ]


def best_rate(run: Callable[[], object], count: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs over ``count`` items."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def rate_of_watchlist(watchlist: Watchlist, items: Sequence[Item], repeats: int) -> float:
    def run() -> None:
        for title, summary, feed, link in items:
            match_item(watchlist, title, summary, feed, link=link)

    return best_rate(run, len(items), repeats)


def rate_of_naive(topics: list[list[str]], items: Sequence[Item], repeats: int) -> float:
    """The baseline: one case-insensitive, word-bounded regex per term, tried term by term."""
    compiled = [
        [re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.IGNORECASE) for term in terms]
        for terms in topics
    ]

    def run() -> None:
        for title, summary, _feed, _link in items:
            text = f"{title}\n{summary}"
            [any(p.search(text) for p in patterns) for patterns in compiled]

    return best_rate(run, len(items), repeats)


def default_terms(watchlist: Watchlist) -> list[list[str]]:
    """The default watchlist's literal terms (vetoes included), one list per topic, for the naive loop."""
    out = []
    for topic in watchlist.topics:
        ids = set(all_terms(topic.condition)) | set(all_terms(topic.veto) if topic.veto else ())
        terms = [watchlist.index.terms[i] for i in sorted(ids)]
        out.append([t.text.rstrip("*") for t in terms if t.regex is None])
    return out


def synthetic_watchlist(items: Sequence[Item], rng: random.Random) -> tuple[str, list[list[str]]]:
    """TOML for 500 topics x 20 terms (a fifth of them two-word phrases), and the same terms as lists."""
    counts: Counter[str] = Counter()
    for title, summary, _feed, _link in items[:5000]:
        counts.update(w for w in re.findall(r"[^\W\d_]{4,}", f"{title} {summary}".lower()))
    common = [w for w, _ in counts.most_common(20000)]
    # Skip the commonest words, unless the vocabulary is the small built-in one (no corpus beside the repo).
    vocabulary = common[200:] if len(common) > 1000 else common
    topics: list[list[str]] = []
    lines: list[str] = []
    for number in range(500):
        terms = [
            " ".join(rng.sample(vocabulary, 2)) if rng.random() < 0.2 else rng.choice(vocabulary)
            for _ in range(20)
        ]
        terms = list(dict.fromkeys(terms))
        topics.append(terms)
        quoted = ", ".join(json.dumps(t, ensure_ascii=False) for t in terms)
        lines += ["[[topic]]", f'id = "t{number}"', f'name = "Topic {number}"', f"any = [{quoted}]", ""]
    return "\n".join(lines), topics


def report(label: str, ours: float, naive: float) -> None:
    print(f"{label}")
    print(f"  alertd matcher     {ours:12,.0f} items/s")
    print(f"  naive regex loop   {naive:12,.0f} items/s")
    print(f"  ratio              {ours / naive:12,.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    args = parser.parse_args()
    rng = random.Random(20240601)
    repeats = 2 if args.quick else 5
    if ITEMS.exists():
        items = load_items()
        if args.quick:
            items = items[:3000]
        default = load_watchlist(WATCHLIST)
        ours = rate_of_watchlist(default, items, repeats)
        naive = rate_of_naive(default_terms(default), items[:2000], 2)
        report(f"(a) default watchlist, {len(items):,} BFM items (target >= 20,000 items/s)", ours, naive)
    else:
        print(f"(a) skipped: {ITEMS} not found")
        items = synthetic_items(3000, rng)
    toml, topics = synthetic_watchlist(items, rng)
    started = time.perf_counter()
    synthetic = compile_watchlist(loads(toml, Path("synthetic.toml")))
    compile_seconds = time.perf_counter() - started
    sample = items[:3000] if args.quick else items[:8000]
    ours = rate_of_watchlist(synthetic, sample, repeats)
    naive = rate_of_naive(topics, sample[:150], 1)
    print()
    report(
        f"(b) synthetic {len(topics)} topics x 20 terms, compiled in {compile_seconds:.2f}s "
        f"(target >= 10x naive)",
        ours,
        naive,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
