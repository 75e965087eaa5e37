#!/usr/bin/env python3
"""Story clustering on the BFM corpus: how many items merge into how many stories, by which rule, at what cost.

    /work/venv/bin/python bench/stories.py                 # figures, and 50 merges drawn at random to check
    /work/venv/bin/python bench/stories.py --sample 0      # figures only
    /work/venv/bin/python bench/stories.py --window 24h

The 16,694 items of ../shared/data/bfm/items.jsonl arrive in order of publication, each first seen when it was
published, through alertd's own code: ``identify`` gives each its key and link key, ``stories.assign_stories``
decides its story from the candidates found by its marks (as the store finds them, from an in-memory index of
every earlier item's marks). Printed: items, stories, items merged by each rule, the sizes of the largest
stories, the time per item of clustering beside the time per item of ``identify`` + ``html_to_text`` (the
baseline measured in the same run), and ``--sample`` merges (seeded) with both titles and the start of both
summaries, to be read by hand: a false merge is two different stories made one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertd import stories  # noqa: E402
from alertd.identify import entry_keys, make_items  # noqa: E402
from alertd.models import Entry, Item  # noqa: E402
from alertd.validators import duration  # noqa: E402

ITEMS = ROOT.parent / "shared" / "data" / "bfm" / "items.jsonl"


def load(path: Path) -> list[tuple[datetime, Item]]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    rows.sort(key=lambda r: (parsedate_to_datetime(r["published"]), r["id"]))
    arrived: list[tuple[datetime, Item]] = []
    for row in rows:
        when = parsedate_to_datetime(row["published"])
        entry = Entry(guid=row["link"], link=row["link"], title=row["title"], summary_html=row["summary"])
        feed = "bench:" + row["feed"]
        keys = entry_keys([entry], feed)
        (item,) = make_items([entry], keys, feed, row["feed"], frozenset(), when)
        arrived.append((when, item))
    return arrived


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=Path, default=ITEMS)
    parser.add_argument("--window", type=duration, default=timedelta(hours=48))
    parser.add_argument("--sample", type=int, default=50, help="merges to print for a check by hand")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    if not args.items.exists():
        print(f"{args.items} not found: this benchmark needs ../shared", file=sys.stderr)
        return 1

    started = time.perf_counter()
    arrived = load(args.items)
    baseline = (time.perf_counter() - started) / len(arrived)

    index: dict[str, list[stories.StoryCandidate]] = defaultdict(list)
    by_key: dict[str, tuple[Item, datetime]] = {}
    rules: Counter[str] = Counter()
    merges: list[tuple[str, Item, Item]] = []
    elapsed = 0.0
    for when, item in arrived:
        started = time.perf_counter()
        (signed,) = stories.sign([item])
        # What Store.story_candidates returns: every earlier item sharing a mark (same_story applies the
        # window, as in the daemon, where the query also skips title and band marks older than the window).
        found = {c.item_key: c for mark in signed.marks for c in index.get(mark, ())}
        (placed,) = stories.assign_stories([signed], found.values(), args.window, when)
        elapsed += time.perf_counter() - started
        if placed.story_key != item.story_key:
            ordered = sorted(found.values(), key=lambda c: (c.first_seen, c.item_key))
            joined = next(c for c in ordered if stories.same_story(placed, c, args.window, when) is not None)
            rule = stories.same_story(placed, joined, args.window, when)
            assert rule is not None and joined.story_key == placed.story_key
            rules[rule] += 1
            merges.append((rule, by_key[joined.item_key][0], placed))
        candidate = stories.StoryCandidate(
            placed.key, placed.story_key, placed.title, when, placed.link_key, placed.shape
        )
        for mark in placed.marks:
            index[mark].append(candidate)
        by_key[placed.key] = (placed, when)

    sizes = Counter(item.story_key for item, _ in by_key.values())
    print(
        f"items: {len(arrived):,}  stories: {len(sizes):,}  merged items: {sum(rules.values()):,} "
        f"({100 * sum(rules.values()) / len(arrived):.1f} %)  window: {args.window}"
    )
    print("merged by rule: " + ", ".join(f"{rule} {count:,}" for rule, count in rules.most_common()))
    print("largest stories: " + ", ".join(str(n) for _, n in sizes.most_common(8)))
    same_feed = sum(1 for _, first, copy in merges if first.feed_name == copy.feed_name)
    print(f"merges within one feed: {same_feed:,}, across feeds: {len(merges) - same_feed:,}")
    per_item = elapsed / len(arrived)
    print(
        f"clustering: {per_item * 1e6:.1f} µs/item; baseline (identify + text): {baseline * 1e6:.1f} µs/item; "
        f"ratio {per_item / baseline:.2f}"
    )

    rng = random.Random(args.seed)
    for number, (rule, first, copy) in enumerate(rng.sample(merges, min(args.sample, len(merges))), 1):
        print(f"\n{number:2}. [{rule}] {first.feed_name} | {copy.feed_name}")
        print(f"    A: {first.title}\n       {first.summary_text[:110]!r}")
        print(f"    B: {copy.title}\n       {copy.summary_text[:110]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
