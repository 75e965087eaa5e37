#!/usr/bin/env python3
"""Precision, recall and F1 of the default watchlist on the labelled dev set, per topic.

    /work/venv/bin/python bench/eval.py                  # the shipped watchlist
    /work/venv/bin/python bench/eval.py --compare        # + naive keyword OR, stemmer, no inflection
    /work/venv/bin/python bench/eval.py --errors french-exports   # list false positives / negatives

Skips cleanly (exit 0) when ../shared (beside the repository) is absent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertd.match import match_item  # noqa: E402
from alertd.normalise import fold  # noqa: E402
from alertd.termindex import Inflection  # noqa: E402
from alertd.watchlist import Watchlist, load_watchlist  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "eval" / "dev.jsonl"
WATCHLIST = ROOT / "config" / "watchlist.toml"
TOPICS = ("chinese-ecommerce", "french-exports")

# The naive baseline: a case-insensitive OR of the obvious keywords, as a first-day user would write it.
NAIVE = {
    "chinese-ecommerce": [
        "alibaba",
        "aliexpress",
        "temu",
        "shein",
        "jd.com",
        "pinduoduo",
        "taobao",
        "tmall",
        "tiktok shop",
        "jack ma",
    ],
    "french-exports": [
        "export",
        "exportation",
        "exportations",
        "commerce extérieur",
        "balance commerciale",
        "déficit commercial",
        "trade deficit",
        "exports",
    ],
}


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int

    def line(self) -> str:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return f"P {p:.3f}  R {r:.3f}  F1 {f:.3f}  (tp {self.tp} fp {self.fp} fn {self.fn})"


def items() -> Iterator[dict[str, object]]:
    with DEV.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


Predict = Callable[[dict[str, object]], set[str]]


def watchlist_predictor(watchlist: Watchlist) -> Predict:
    def predict(item: dict[str, object]) -> set[str]:
        found = match_item(
            watchlist,
            str(item.get("title") or ""),
            str(item.get("summary") or ""),
            str(item.get("feed") or ""),
            link=str(item.get("link") or ""),
        )
        return {m.topic_id for m in found}

    return predict


def naive_predictor() -> Predict:
    patterns = {t: re.compile("|".join(re.escape(k) for k in ks), re.I) for t, ks in NAIVE.items()}

    def predict(item: dict[str, object]) -> set[str]:
        text = f"{item.get('title') or ''} {item.get('summary') or ''}"
        return {t for t, p in patterns.items() if p.search(text)}

    return predict


def score(predict: Predict, errors_for: str | None = None) -> dict[str, Score]:
    counts = {t: [0, 0, 0] for t in TOPICS}
    for item in items():
        predicted = predict(item)
        labels = item["labels"]
        assert isinstance(labels, dict)
        for topic in TOPICS:
            truth, guess = bool(labels[topic]), topic in predicted
            slot = 0 if truth and guess else 1 if guess else 2 if truth else None
            if slot is not None:
                counts[topic][slot] += 1
            if topic == errors_for and truth != guess:
                print(
                    f"{'FP' if guess else 'FN'} {item['id']} {item.get('title')!s:.90} | "
                    f"{item.get('summary')!s:.150}"
                )
    return {t: Score(*c) for t, c in counts.items()}


def stemmer_inflection() -> Inflection | None:
    try:
        import snowballstemmer  # type: ignore[import-not-found]
    except ImportError:
        return None
    french, english = snowballstemmer.stemmer("french"), snowballstemmer.stemmer("english")
    cache: dict[str, str] = {}

    def key(word: str) -> str:
        found = cache.get(word)
        if found is None:
            found = cache[word] = fold(english.stemWord(french.stemWord(word)))
        return found

    return Inflection(key=key)


def report(label: str, scores: dict[str, Score]) -> None:
    print(label)
    for topic, s in scores.items():
        print(f"  {topic:18} {s.line()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchlist", type=Path, default=WATCHLIST)
    parser.add_argument("--compare", action="store_true", help="also score the alternatives")
    parser.add_argument("--errors", metavar="TOPIC", help="print misclassified dev items")
    args = parser.parse_args()
    if not DEV.exists():
        print(f"skipped: {DEV} not found")
        return 0
    watchlist = load_watchlist(args.watchlist)
    report(f"{args.watchlist.name} (explicit forms)", score(watchlist_predictor(watchlist), args.errors))
    if args.compare:
        report("naive keyword OR", score(naive_predictor()))
        exact = Inflection(forms=lambda word: frozenset((word,)))
        report("no inflection", score(watchlist_predictor(load_watchlist(args.watchlist, exact))))
        stem = stemmer_inflection()
        if stem is None:
            print("snowball stemmer: skipped (pip install snowballstemmer)")
        else:
            stemmed = load_watchlist(args.watchlist, stem)
            report("snowball stemmer (fr+en)", score(watchlist_predictor(stemmed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
