#!/usr/bin/env python3
"""Regenerate docs/digest.png: a real digest, rendered by ``alertd preview``, photographed by headless Chromium.

    python scripts/screenshot.py [--output docs/digest.png] [--keep DIR]

It builds a throwaway config and state database: the shipped watchlist (config/watchlist.toml), and BFM items
from ``../shared/data/bfm/items.jsonl`` when that file is present (else a few built-in BFM-like items). Every
item goes through alertd's own matcher, so the highlights and "why" lines are the real ones. Publication
times are moved into the last day, keeping their order (the corpus spans years); one story is recorded as
already sent in an alert, and one feed as failing, so the screenshot shows every part of a digest.

Needs Chromium (Debian: ``apt-get install chromium``). Nothing touches the network: the page has no remote
resources and Chromium runs with background networking disabled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alertd.match import match_item  # noqa: E402
from alertd.models import Item, Match  # noqa: E402
from alertd.polling import failed_state  # noqa: E402
from alertd.records import AttemptRecord, FeedState, PollWrite  # noqa: E402
from alertd.store import Store  # noqa: E402
from alertd.text import html_to_text  # noqa: E402
from alertd.watchlist import load_watchlist  # noqa: E402

SHARED_ITEMS = REPO.parent / "shared" / "data" / "bfm" / "items.jsonl"
PER_TOPIC = 3
RECENT = 3000  # how many of the newest items are considered
SUBSCRIBER = "marie@example.org"
FALLBACK_ITEMS = [
    {
        "feed": "BFM : entreprise",
        "title": "Alibaba ouvre un bureau en France pour aider les marques à exporter",
        "summary": "Le géant chinois de l'e-commerce veut aider les enseignes françaises à vendre en Chine.",
        "link": "https://www.bfmtv.com/economie/entreprises/alibaba-ouvre-un-bureau-en-france_AN-201509150001.html",
    },
    {
        "feed": "BFM : consommation",
        "title": "Temu et Shein visés par une nouvelle taxe sur les petits colis",
        "summary": "Le gouvernement veut freiner l'afflux de colis venus de Chine.",
        "link": "https://www.bfmtv.com/economie/consommation/temu-shein-petits-colis_AN-202410010001.html",
    },
    {
        "feed": "BFM : économie monde",
        "title": "La filière du cognac face à l'enquête antidumping chinoise",
        "summary": "Les exportations de cognac vers la Chine sont menacées par des droits de douane.",
        "link": "https://www.bfmtv.com/economie/international/cognac-antidumping_AD-202405040215.html",
    },
    {
        "feed": "BFM : économie",
        "title": "Balance commerciale : le déficit se réduit grâce à l'aéronautique",
        "summary": "Les livraisons d'Airbus ont soutenu les exportations françaises au troisième trimestre.",
        "link": "https://www.bfmtv.com/economie/balance-commerciale-deficit_AN-202411070001.html",
    },
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "digest.png")
    parser.add_argument("--keep", type=Path, help="build the config and state here and keep them")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        print("screenshot: Chromium not found (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="alertd-screenshot-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        config = build_state(work, datetime.now(UTC))
        page = work / "digest.html"
        preview = subprocess.run(  # noqa: S603 - a fixed argv: this interpreter running alertd
            [sys.executable, "-m", "alertd", "preview", "-c", str(config), "--output", str(page)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        print(preview.stdout.strip())
        if preview.returncode != 0 or not page.exists():
            print(preview.stderr, file=sys.stderr)
            return 1
        shoot(args.chromium, page, args.output.resolve(), Path(scratch) / "chromium-profile")
    print(f"wrote {args.output}")
    return 0


def build_state(work: Path, now: datetime) -> Path:
    """A config, the shipped watchlist and a state database with matched BFM items pending for one reader."""
    shutil.copyfile(REPO / "config" / "watchlist.toml", work / "watchlist.toml")
    watchlist = load_watchlist(work / "watchlist.toml")
    chosen = choose_items(watchlist, load_items())
    feeds = sorted({entry["feed"] for entry, _ in chosen} | {"BFM : aéronautique"})
    feed_tables = "\n".join(f'[[feed]]\nname = "{name}"\nurl = "{feed_url(name)}"\n' for name in feeds)
    config = work / "alertd.toml"
    config.write_text(
        f'{feed_tables}\n[delivery]\nmethod = "maildir"\nfrom = "alertd@example.org"\n\n'
        f'[[subscriber]]\nemail = "{SUBSCRIBER}"\nname = "Marie"\nschedule = "daily 07:00"\n'
        'timezone = "Europe/Paris"\nlanguage = "fr"\n',
        encoding="utf-8",
    )
    # A day's worth of news: the chosen items, newest first, an hour and a quarter apart up to an hour ago.
    order = sorted({published for _, (_, published) in chosen}, reverse=True)
    shifted = {published: now - timedelta(hours=1, minutes=75 * rank) for rank, published in enumerate(order)}
    with Store.open(work / "var" / "alertd.sqlite3") as store:
        store.register_subscribers([SUBSCRIBER], now - timedelta(days=3650))  # every match below is pending
        for name in feeds:
            store.record_poll(PollWrite(FeedState(feed_url(name), name)), now - timedelta(days=1))
        alerted = None
        for entry, (matches, published) in chosen:
            when = shifted[published]
            link = entry["link"]
            item = Item(
                key=f"{entry['feed']}|{link}",
                feed_url=feed_url(entry["feed"]),
                feed_name=entry["feed"],
                title=entry["title"],
                summary_text=html_to_text(entry.get("summary") or ""),
                summary_html=entry.get("summary") or "",
                link=link,
                story_key=link,
                published=when,
            )
            seen_at = when + timedelta(minutes=7)
            feed = replace(store.feed_state(item.feed_url, item.feed_name), last_success_at=seen_at)
            store.record_poll(PollWrite(feed, [item], matches=[(item.key, m) for m in matches]), seen_at)
            alerted = alerted or (item, matches[0])
        if alerted is not None:  # one story already went out as a priority alert
            from alertd.models import MatchedItem

            sent = MatchedItem(alerted[0], alerted[1], now)
            alert_id = store.enqueue_digest(SUBSCRIBER, "<alert@alertd>", b"", [sent], now, kind="alert")
            if alert_id is not None:
                store.record_attempt(AttemptRecord(alert_id, "sent", 1), now)
        aero = feed_url("BFM : aéronautique")
        state = replace(
            store.feed_state(aero, "BFM : aéronautique"), last_success_at=now - timedelta(hours=11)
        )
        for hours in (9, 7, 5, 3, 1):
            state = failed_state(state, "http_5xx", "HTTP 503", now - timedelta(hours=hours), None)
        store.record_poll(PollWrite(state), now)
    return config


def load_items() -> list[dict[str, str]]:
    if not SHARED_ITEMS.is_file():
        return [dict(entry, published="") for entry in FALLBACK_ITEMS]
    with SHARED_ITEMS.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def choose_items(watchlist, items):  # type: ignore[no-untyped-def]
    """Among the most recent matching items, the best PER_TOPIC stories of each topic (score, then recency),
    plus their copies in other feeds (they show as "also in")."""
    candidates: dict[str, list] = {}  # type: ignore[type-arg]
    copies: dict[str, list] = {}  # type: ignore[type-arg]
    for entry in sorted(items, key=published_of, reverse=True)[:RECENT]:
        summary = html_to_text(entry.get("summary") or "")
        matches: tuple[Match, ...] = match_item(
            watchlist, entry["title"], summary, feed_name=entry["feed"], link=entry.get("link") or ""
        )
        if matches:
            copies.setdefault(entry["link"], []).append((entry, (matches, published_of(entry))))
            candidates.setdefault(matches[0].topic_id, []).append(
                (matches[0].score, published_of(entry), entry)
            )
    chosen = []
    for ranked in candidates.values():
        ranked.sort(key=lambda c: (-c[0], -c[1].timestamp()))
        links = list(dict.fromkeys(entry["link"] for _, _, entry in ranked))[:PER_TOPIC]
        chosen += [copy for link in links for copy in copies.pop(link, [])]
    return chosen


def published_of(entry: dict[str, str]) -> datetime:
    try:
        return parsedate_to_datetime(entry.get("published") or "").astimezone(UTC)
    except (TypeError, ValueError):
        return datetime(2026, 1, 1, tzinfo=UTC)


def feed_url(name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name.casefold()).strip("-")
    return f"https://www.bfmtv.com/rss/{slug}/"


def shoot(chromium: str, page: Path, output: Path, profile: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - a fixed argv: the Chromium found on PATH
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=900,1400",
            f"--screenshot={output}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


if __name__ == "__main__":
    sys.exit(main())
