"""alertd.incremental: parsing only the items a feed did not carry last time gives what a whole parse gives.

The equivalence test drives the real ParserPool through hundreds of random edits of a feed (new items, dropped,
edited, reordered, repeated items, a changed channel, CDATA and comments that look like item tags) and compares
each incremental parse with an in-process parse of the whole document. The pipeline tests poll a real loopback
server with a real store.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd import incremental, pipeline
from alertd.config import FeedConfig, load_config
from alertd.incremental import Layouts, slim, split
from alertd.models import ParsedFeed
from alertd.parse import ParserPool, parse_feed
from alertd.runtime import open_runtime
from alertd.watchlist import load_watchlist
from tests.feedserver import FeedServer, make_rss

HEADERS = "application/rss+xml; charset=utf-8"  # the Content-Type, as the fetch translated it
URL = "https://www.bfmtv.com/rss/economie/"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- cutting a document at its items ----------------------------------------------------------------------------


def test_split_cuts_head_items_and_tail() -> None:
    body = b"<rss><channel><title>t</title>\n<item><title>a</title></item>\n <item><title>b</title></item></channel></rss>"
    assert split(body) == (
        b"<rss><channel><title>t</title>\n",
        [b"<item><title>a</title></item>", b"<item><title>b</title></item>"],
        b"</channel></rss>",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<rss><channel><title>no items</title></channel></rss>",
        b'<rss><channel><item id="1"><title>a</title></item></channel></rss>',
        b"<rss><channel><item><title>a</title><item>nested</item></item></channel></rss>",
        b"<rss><channel><item>a</item><!-- between --><item>b</item></channel></rss>",
        b"<rss><channel><item>a</item><title>between</title><item>b</item></channel></rss>",
        b"<rss><channel><items/><item>a</item></channel></rss>",
        b"<rss><channel><item>never closed</channel></rss>",
        b"<rss><channel><item>a</item>\x0c<item>b</item></channel></rss>",
    ],
)
def test_split_refuses_anything_but_a_clean_cut(body: bytes) -> None:
    assert split(body) is None


def test_the_fast_path_reports_the_exact_bytes_of_each_item() -> None:
    rnd = random.Random(11)
    body = make_rss([random_item(rnd, k) for k in range(6)]).replace(b"<item>", b"<item>\n ", 2)
    feed = parse_feed(body, HEADERS, URL)
    assert feed.item_spans is not None
    assert 6 == len(feed.item_spans) == len(feed.entries)
    for start, end in feed.item_spans:
        assert body[start:end].startswith(b"<item>")
        assert body[start:end].endswith(b"</item>")
        assert 1 == body[start:end].count(b"<item>")


# --- equivalence with a whole parse ---------------------------------------------------------------------------


def random_item(rnd: random.Random, serial: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "title": rnd.choice(["Alibaba à Paris", "Temu & Shein", "Cognac: les droits", "La BCE"])
        + f" {serial}",
        "lede": rnd.choice(
            ["<p>Un <b>marché</b> &amp; des colis.</p>", "Texte simple", "", "<p>a</p><p>b</p>"]
        ),
        "pub_date": NOW - timedelta(minutes=serial),
    }
    shape = rnd.random()
    link = f"https://www.bfmtv.com/economie/article-{serial}.html"
    if shape < 0.6:
        item["link"] = item["guid"] = link
    elif shape < 0.75:
        item["guid"] = f"urn:bfm:{serial % 7}"  # GUIDs repeat across items: identity disambiguates by link
        item["link"] = link
    elif shape < 0.9:
        item["link"] = link
    # else: neither GUID nor link (content identity: the summary is kept in memory)
    if rnd.random() < 0.05:
        item.pop("lede")
        item["description"] = "CDATA-MARK"  # raw CDATA holding item tags, see document()
    return item


def edited(rnd: random.Random, items: list[dict[str, Any]], serial: int) -> tuple[list[dict[str, Any]], str]:
    """The feed's next version and the channel title it has."""
    items = [dict(item) for item in items]
    for _ in range(rnd.choice([0, 1, 1, 2, 5])):
        serial += 1
        items.insert(0, random_item(rnd, serial))
    roll = rnd.random()
    if roll < 0.2 and items:
        del items[rnd.randrange(len(items))]
    elif roll < 0.3 and items:
        items[rnd.randrange(len(items))]["title"] += " (mis à jour)"
    elif roll < 0.4:
        rnd.shuffle(items)
    elif roll < 0.5 and items:
        items.append(dict(rnd.choice(items)))  # the same item twice
    del items[rnd.randint(8, 14) :]
    title = "BFM Économie" if rnd.random() < 0.9 else "BFM Économie (nouveau titre)"
    return items, title


def document(items: Sequence[dict[str, Any]], title: str, rnd: random.Random) -> bytes:
    body = make_rss(items, title=title).replace(b"CDATA-MARK", b"<![CDATA[<p>fake </item><item> tags</p>]]>")
    if rnd.random() < 0.05:
        body = body.replace(b"</item>\n<item>", b"</item><!-- <item>x</item> --><item>", 1)
    return body


def assert_same(got: incremental.Parse, whole: ParsedFeed) -> None:
    assert (got.feed.title, got.feed.link, got.feed.ttl_minutes) == (
        whole.title,
        whole.link,
        whole.ttl_minutes,
    )
    expected = [slim(e) if i in got.reused else e for i, e in enumerate(whole.entries)]
    assert expected == list(got.feed.entries)


@pytest.fixture(scope="module")
def pool() -> Any:
    with ParserPool(max_workers=2) as parser_pool:
        yield parser_pool


async def test_incremental_parse_equals_a_whole_parse_through_random_edits(pool: ParserPool) -> None:
    rnd = random.Random(20261126)
    reused = partial = 0
    for scenario in range(60):
        layouts, serial = Layouts(), 1000 * scenario
        items = [random_item(rnd, serial + k) for k in range(rnd.randint(1, 10))]
        title = "BFM Économie"
        for _ in range(5):
            body = document(items, title, rnd)
            got = await incremental.parse(pool, layouts, "feed", body, HEADERS, URL)
            assert_same(got, parse_feed(body, HEADERS, URL))
            reused += len(got.reused)
            partial += 0 < len(got.reused) < len(got.feed.entries)
            serial += 10
            items, title = edited(rnd, items, serial)
    assert reused > 500, "the random edits must exercise reuse, not only whole parses"
    assert partial > 50


async def test_a_document_without_new_items_is_not_parsed(pool: ParserPool) -> None:
    layouts = Layouts()
    rnd = random.Random(3)
    items = [random_item(rnd, k) for k in range(5)]
    await incremental.parse(pool, layouts, "feed", make_rss(items), HEADERS, URL)
    reordered = make_rss(list(reversed(items)))
    got = await incremental.parse(_NoParse(), layouts, "feed", reordered, HEADERS, URL)  # type: ignore[arg-type]
    assert set(range(5)) == got.reused
    assert_same(got, parse_feed(reordered, HEADERS, URL))


async def test_a_known_item_inside_a_new_items_cdata_is_not_taken_for_an_item(pool: ParserPool) -> None:
    layouts = Layouts()
    items = [random_item(random.Random(5), k) for k in (1, 2)]
    first = make_rss(items)
    await incremental.parse(pool, layouts, "feed", first, HEADERS, URL)
    known = first[first.index(b"<item>") : first.index(b"</item>") + len(b"</item>")]
    wrapper = (
        b"<item><title>Nouveau</title><description><![CDATA[</item>"
        + known
        + b"<item>]]></description></item>"
    )
    second = first.replace(b"<item>", wrapper + b"\n<item>", 1)
    got = await incremental.parse(pool, layouts, "feed", second, HEADERS, URL)
    whole = parse_feed(second, HEADERS, URL)
    assert 3 == len(whole.entries)
    assert_same(got, whole)


class _NoParse:
    """A parser pool that must not be used."""

    async def parse(self, *args: object) -> ParsedFeed:
        raise AssertionError("parsed")

    async def parse_fast(self, *args: object) -> ParsedFeed:
        raise AssertionError("parsed")


async def test_disabled_layouts_remember_nothing(pool: ParserPool) -> None:
    layouts = Layouts(enabled=False)
    await incremental.parse(pool, layouts, "feed", make_rss([random_item(random.Random(1), 1)]), HEADERS, URL)
    assert {} == layouts.by_feed


# --- in the pipeline ---------------------------------------------------------------------------------------------


class RecordingParser:
    """The real ParserPool, recording the documents each path received."""

    def __init__(self, real: ParserPool) -> None:
        self.real = real
        self.whole: list[bytes] = []
        self.reduced: list[bytes] = []

    async def parse(self, body: bytes, content_type: str | None, url: str) -> ParsedFeed:
        self.whole.append(body)
        return await self.real.parse(body, content_type, url)

    async def parse_fast(self, body: bytes, content_type: str | None, url: str) -> ParsedFeed | None:
        self.reduced.append(body)
        return await self.real.parse_fast(body, content_type, url)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[pipeline.Runtime]:
    (tmp_path / "watchlist.toml").write_text('[[topic]]\nid = "t"\nname = "T"\nany = ["Alibaba"]\n', "utf-8")
    (tmp_path / "alertd.toml").write_text('[state]\npath = "state.sqlite3"\n', "utf-8")
    config = load_config(tmp_path / "alertd.toml")
    async with open_runtime(config, load_watchlist(config.watchlist), {}) as runtime:
        runtime.parser = RecordingParser(runtime.parser)  # type: ignore[assignment]
        yield runtime


def bfm_items(numbers: range) -> list[dict[str, Any]]:
    return [
        {
            "title": f"Alibaba et les marques françaises, épisode {n}",
            "link": f"https://www.bfmtv.com/economie/alibaba-{n}.html",
            "guid": f"https://www.bfmtv.com/economie/alibaba-{n}.html",
            "lede": f"<p>Épisode {n}: le géant chinois aide les enseignes françaises.</p>",
            "pub_date": NOW - timedelta(minutes=n),
        }
        for n in numbers
    ]


async def test_a_poll_with_one_new_item_parses_only_that_item(
    rt: pipeline.Runtime, feed_server: FeedServer
) -> None:
    recorder: RecordingParser = rt.parser  # type: ignore[assignment]
    target = FeedConfig(url=feed_server.url("/bfm.xml"), name="BFM")
    feed_server.route("/bfm.xml", make_rss(bfm_items(range(1, 31))))
    assert "seeded" == (await pipeline.poll_feed(rt, target, NOW)).status
    feed_server.route("/bfm.xml", make_rss(bfm_items(range(0, 30))))
    report = await pipeline.poll_feed(rt, target, NOW + timedelta(minutes=15))
    assert (report.status, report.new_items, report.matches) == ("ok", 1, 1)
    assert 1 == len(recorder.whole)
    assert [1] == [body.count(b"<item>") for body in recorder.reduced]
    (summary,) = rt.store._db.execute(
        "SELECT summary_text FROM items WHERE link = 'https://www.bfmtv.com/economie/alibaba-0.html'"
    ).fetchone()
    assert "Épisode 0: le géant chinois aide les enseignes françaises." == summary


async def test_remembered_items_the_store_does_not_know_are_parsed_again_whole(
    rt: pipeline.Runtime, feed_server: FeedServer, tmp_path: Path
) -> None:
    """The poll that saw them did not commit (here: the items are deleted behind the daemon's back)."""
    recorder: RecordingParser = rt.parser  # type: ignore[assignment]
    target = FeedConfig(url=feed_server.url("/bfm.xml"), name="BFM")
    feed_server.route("/bfm.xml", make_rss(bfm_items(range(1, 4))))
    await pipeline.poll_feed(rt, target, NOW)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("DELETE FROM items")
    feed_server.route("/bfm.xml", make_rss(bfm_items(range(0, 4))))
    report = await pipeline.poll_feed(rt, target, NOW + timedelta(minutes=15))
    assert 4 == report.new_items
    assert 2 == len(recorder.whole), "the reduced parse was not enough: the whole document was parsed"
    summaries = [row[0] for row in rt.store._db.execute("SELECT summary_text FROM items ORDER BY link")]
    assert [f"Épisode {n}: le géant chinois aide les enseignes françaises." for n in range(4)] == summaries
