"""parse.py: entries, the bozo policy, hostile documents, and the worker pool (RELIABILITY F1, F11, F12; matrix
15-17, 36)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.errors import ParseError
from alertd.models import ParsedFeed
from alertd.parse import ParserPool, parse_feed, parse_in_worker
from tests.feedserver import make_rss

DATA = Path(__file__).parent / "data" / "feeds"
SHARED_FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
URL = "https://www.bfmtv.com/rss/economie/"
XML = "application/rss+xml; charset=utf-8"  # the Content-Type, as the fetch translated it
UTC = timezone.utc


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def redos_feed(repeat: int = 32000) -> bytes:
    """feedparser's e-mail regex is quadratic on this author (RELIABILITY F11, feedparser #562)."""
    author = "a@" + "a-" * repeat + "."
    return make_rss([{"title": "t", "link": "https://x.test/1", "author": author}])


BFM_ITEM = {
    "title": "Cognac : Pékin impose des droits de douane",
    "link": "https://www.bfmtv.com/economie/international/cognac_AV-202409080001.html",
    "guid": "AV-202409080001",
    "lede": "Les producteurs charentais s'inquiètent.",
    "image": "https://images.bfmtv.com/cognac.jpg",
    "pub_date": datetime(2024, 9, 8, 6, 30, tzinfo=UTC),
    "author": "redaction@bfmtv.com (BFM Business)",
}


# --- entries ------------------------------------------------------------------------------------------------------


def test_bfm_item_becomes_entry() -> None:
    feed = parse_feed(make_rss([BFM_ITEM], ttl=15), XML, URL)
    (entry,) = feed.entries
    assert (BFM_ITEM["guid"], BFM_ITEM["link"], BFM_ITEM["title"]) == (entry.guid, entry.link, entry.title)
    assert "Les producteurs charentais s'inquiètent." in entry.summary_html
    assert "images.bfmtv.com/cognac.jpg" in entry.summary_html
    assert datetime(2024, 9, 8, 6, 30, tzinfo=UTC) == entry.published
    assert entry.author == "redaction@bfmtv.com (BFM Business)"
    assert (feed.ttl_minutes, feed.warning, feed.title) == (15, None, "BFM Business - Économie")


def test_html_title_becomes_plain_text_and_content_beats_short_summary() -> None:
    feed = parse_feed(fixture("atom_html_title.atom"), "application/atom+xml", URL)
    (entry,) = feed.entries
    assert entry.title == "LVMH recule & Kering aussi"
    assert entry.summary_html.startswith("<p>Le luxe recule")
    assert datetime(2024, 5, 22, 7, 15, tzinfo=UTC) == entry.published


def test_double_escaped_title_is_unescaped() -> None:
    feed = parse_feed(make_rss([{"title": "Total &amp; Engie", "link": "https://x.test/1"}]), XML, URL)
    assert feed.entries[0].title == "Total & Engie"


def test_relative_link_is_resolved_against_feed_url() -> None:
    feed = parse_feed(fixture("atom_html_title.atom"), None, "https://feeds.example.test/latribune.atom")
    assert feed.entries[0].link == "https://feeds.example.test/articles/lvmh.html"


def test_missing_date_guid_and_link_are_none() -> None:
    feed = parse_feed(make_rss([{"title": "Sans date", "lede": "x"}]), XML, URL)
    (entry,) = feed.entries
    assert (entry.published, entry.guid, entry.link) == (None, None, None)


@pytest.mark.parametrize(("ttl", "expected"), [(30, 30), (0, None), (10**9, None)])
def test_ttl_is_read_when_plausible(ttl: int, expected: int | None) -> None:
    assert expected == parse_feed(make_rss([BFM_ITEM], ttl=ttl), XML, URL).ttl_minutes


def test_valid_feed_without_items_is_empty_not_an_error() -> None:
    feed = parse_feed(make_rss([]), XML, URL)
    assert (feed.entries, feed.warning) == ((), None)


# --- bozo policy --------------------------------------------------------------------------------------------------


def test_wrong_declared_encoding_is_parsed_with_warning() -> None:
    feed = parse_feed(fixture("latin1_declared_utf8.xml"), XML, URL)
    assert feed.entries[0].title == "Hausse des prix de l'énergie : la BCE s'inquiète"
    assert feed.warning is not None and "CharacterEncodingOverride" in feed.warning


def test_shared_iso_8859_1_without_declaration_is_parsed_with_warning() -> None:
    path = SHARED_FEEDS / "miniflux_no_encoding_ISO-8859-1.xml"
    if not path.exists():
        pytest.skip("../shared feed data not present")
    feed = parse_feed(path.read_bytes(), "application/xml", URL)
    assert len(feed.entries) == 10
    assert feed.entries[0].title == "Perturbateurs endocriniens : quels effets sur le cerveau ?"
    assert feed.warning is not None


def test_feed_served_as_non_xml_type_is_parsed_with_warning() -> None:
    feed = parse_feed(make_rss([BFM_ITEM]), "text/html; charset=utf-8", URL)
    assert len(feed.entries) == 1
    assert feed.warning is not None and "NonXMLContentType" in feed.warning


def test_recoverable_xml_error_with_entries_is_parsed_with_warning() -> None:
    body = make_rss([BFM_ITEM]).replace(b"<description>", b"<description>R&D ", 1)
    feed = parse_feed(body, XML, URL)
    assert len(feed.entries) == 1
    assert feed.warning is not None and feed.warning.startswith("recovered from")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (fixture("html_page.html"), "text/html"),
        (fixture("garbage.bin"), "application/octet-stream"),
        (b"", "application/rss+xml"),
        (b"<?xml version='1.0'?><config><a>1</a></config>", "application/xml"),
        (b'{"items": []}', "application/json"),
    ],
    ids=["html-page", "garbage", "empty", "xml-not-a-feed", "json"],
)
def test_not_a_feed_raises_parse_error(body: bytes, content_type: str) -> None:
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(body, content_type, URL)


# --- hostile documents (F12) --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe_file.xml", "padded_doctype.xml"])
def test_entity_attacks_parse_fast_without_expansion_or_file_read(name: str) -> None:
    parse_feed(make_rss([BFM_ITEM]), XML, URL)  # feedparser's lazy imports are not the document's cost
    started = time.perf_counter()
    feed = parse_feed(fixture(name), XML, URL)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1
    (entry,) = feed.entries
    assert len(entry.title) < 20 and len(entry.summary_html) < 200, "an entity was expanded"
    assert "root:" not in entry.title + entry.summary_html


def test_xxe_of_a_local_file_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY s SYSTEM "{secret.as_uri()}">]>'
        '<rss version="2.0"><channel><title>&s;</title><item><title>x &s;</title>'
        "<description>&s;</description></item></channel></rss>"
    ).encode()
    feed = parse_feed(body, XML, URL)
    assert "TOP-SECRET-VALUE" not in repr(feed)


def test_worker_entry_point_reports_problems_instead_of_raising() -> None:
    assert isinstance(parse_in_worker(b"<html>", None, URL), str)
    assert isinstance(parse_in_worker(make_rss([BFM_ITEM]), None, URL), ParsedFeed)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000) | st.text(max_size=2000).map(lambda t: make_rss([{"title": t, "lede": t}])))
def test_worker_entry_point_never_raises(body: bytes) -> None:
    assert isinstance(parse_in_worker(body, XML, URL), ParsedFeed | str)


# --- real-world documents -----------------------------------------------------------------------------------------


def shared_feed_files() -> list[Path]:
    patterns = ("*.xml", "*.atom", "*.rss")
    return (
        sorted(p for pattern in patterns for p in SHARED_FEEDS.glob(pattern)) if SHARED_FEEDS.is_dir() else []
    )


@pytest.mark.parametrize("path", shared_feed_files() or [None], ids=lambda p: p.name if p else "absent")
def test_every_shared_feed_parses_with_entries(path: Path | None) -> None:
    if path is None:
        pytest.skip("../shared feed data not present")
    feed = parse_feed(path.read_bytes(), "application/xml", URL)
    assert feed.entries
    assert any(entry.title and entry.summary_html for entry in feed.entries)


# --- worker pool (F11; matrix 16) ---------------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[ParserPool]:
    with ParserPool(max_workers=2) as parser_pool:
        yield parser_pool


async def test_pool_parses_like_parse_feed(pool: ParserPool) -> None:
    body = make_rss([BFM_ITEM])
    assert parse_feed(body, XML, URL) == await pool.parse(body, XML, URL)


async def test_pool_raises_parse_error_for_not_a_feed(pool: ParserPool) -> None:
    with pytest.raises(ParseError, match="not a feed"):
        await pool.parse(fixture("html_page.html"), "text/html", URL)


async def test_redos_author_is_killed_at_time_limit_while_loop_stays_responsive(pool: ParserPool) -> None:
    await pool.parse(make_rss([BFM_ITEM]), XML, URL)  # workers started: the limit measures the parse only
    workers_before = pool.worker_pids()
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.02)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticker = asyncio.create_task(heartbeat())
    started = time.monotonic()
    with pytest.raises(ParseError, match="parse time limit exceeded"):
        await pool.parse(redos_feed(), XML, URL, time_limit=1.0)
    elapsed = time.monotonic() - started
    done.set()
    await ticker

    assert elapsed < 1.0 + 1.0
    assert max(gaps) < 0.5
    assert await _all_dead(workers_before), "the spinning worker was left running"
    assert len((await pool.parse(make_rss([BFM_ITEM]), XML, URL)).entries) == 1, "pool replaced"


async def test_parses_running_when_the_pool_is_killed_are_retried(pool: ParserPool) -> None:
    await pool.parse(make_rss([BFM_ITEM]), XML, URL)
    # ~1 s of work each; the hostile one is killed at 0.5 s, taking the innocent one's worker down with it.
    hostile = asyncio.create_task(pool.parse(redos_feed(), XML, URL, time_limit=0.5))
    innocent = asyncio.create_task(pool.parse(redos_feed(repeat=8000), XML, URL, time_limit=6.0))
    with pytest.raises(ParseError, match="time limit"):
        await hostile
    assert len((await innocent).entries) == 1


async def _all_dead(pids: tuple[int, ...], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        await asyncio.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
