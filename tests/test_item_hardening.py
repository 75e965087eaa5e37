"""One poisoned item costs the feed that item only (RELIABILITY matrix 43; docs/polling.md, "Poisoned items").

A reference to a character XML does not allow, outside CDATA, is cleaned to U+FFFD; inside CDATA it is text, read
by HTML's rules. A field over its cap is cut in the worker. An entry that fails to convert is dropped. Each case:
every good item equals the same item parsed from the feed without the poisoned one, one notice (none for a
reference in CDATA: nothing was cleaned), and the fast path and feedparser give the same feed (the helpers of
tests/test_fastparse.py).
"""

from __future__ import annotations

import hashlib
import pickle
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd import fastparse, incremental, parse
from alertd.cleanup import MAX_SUMMARY, clean_char_refs
from alertd.incremental import Layouts
from alertd.models import Entry, ParsedFeed
from alertd.parse import ParserPool, parse_feed, parse_in_worker
from alertd.text import cut_text, html_text_head, html_to_text, html_to_text_by_parser, text_to_html
from tests.feedserver import make_rss
from tests.test_fastparse import bfm_chunks, comparable, fast_path, feedparser_path
from tests.test_incremental import assert_same

URL = "https://www.bfmtv.com/rss/economie/"
XML = "application/rss+xml; charset=utf-8"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BODY_CAP = 10 * 1024 * 1024  # RELIABILITY F2: what the fetch lets through
CLEANED = "1 item with invalid character references cleaned (replaced by U+FFFD)"
POISON_AT = 2


def good_items(count: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "title": f"Cognac : Pékin taxe les brandies, épisode {n}",
            "link": f"https://www.bfmtv.com/economie/cognac-{n}.html",
            "guid": f"https://www.bfmtv.com/economie/cognac-{n}.html",
            "lede": f"<p>Les producteurs charentais s'inquiètent ({n}).</p>",
            "pub_date": NOW - timedelta(minutes=n),
        }
        for n in range(count)
    ]


POISONED = {
    "title": "TITLE-MARK",
    "link": "https://www.bfmtv.com/economie/poison.html",
    "guid": "https://www.bfmtv.com/economie/poison.html",
    "description": "SUMMARY-MARK",
}


def with_poisoned(title_xml: bytes, summary_xml: bytes, good: list[dict[str, Any]] | None = None) -> bytes:
    """The good items with the poisoned one at POISON_AT; its title and description written raw."""
    items = good_items() if good is None else good
    body = make_rss([*items[:POISON_AT], POISONED, *items[POISON_AT:]])
    return body.replace(b"TITLE-MARK", title_xml).replace(b"SUMMARY-MARK", summary_xml)


def without_poisoned(good: list[dict[str, Any]] | None = None) -> ParsedFeed:
    return parse_feed(make_rss(good_items() if good is None else good), XML, URL)


def others(feed: ParsedFeed, at: int = POISON_AT) -> list[Entry]:
    return [entry for index, entry in enumerate(feed.entries) if index != at]


# --- character references ------------------------------------------------------------------------------------

INVALID_REFS = [
    # (reference, what HTML reads it as: inside CDATA the reference is text, decoded by html_to_text)
    ("&#xD800;", "\ufffd"),
    ("&#xDFFF;", "\ufffd"),
    ("&#x110000;", "\ufffd"),
    ("&#1114112;", "\ufffd"),
    ("&#99999999999;", "\ufffd"),
    ("&#" + "9" * 5000 + ";", "\ufffd"),
    ("&#X110000;", "\ufffd"),
    ("&#0;", "\ufffd"),
    ("&#x1;", ""),
    ("&#xFFFE;", ""),
    ("&#65535;", ""),
]
REF_IDS = [ref[:14] for ref, _ in INVALID_REFS]


def poisoned_document(ref: str, field: str, cdata: bool) -> bytes:
    text = f"Alerte {ref} sur le cognac"
    if field == "title":
        title = f"<![CDATA[{text}]]>" if cdata else text
        return with_poisoned(title.encode(), b"&lt;p&gt;Texte sain.&lt;/p&gt;")
    summary = f"<![CDATA[<p>{text}</p>]]>" if cdata else f"&lt;p&gt;{text}&lt;/p&gt;"
    return with_poisoned(b"Titre sain", summary.encode())


@pytest.mark.parametrize("field", ["title", "summary"])
@pytest.mark.parametrize(("ref", "as_html"), INVALID_REFS, ids=REF_IDS)
def test_an_invalid_reference_outside_cdata_is_cleaned_and_the_feed_kept(
    ref: str, as_html: str, field: str
) -> None:
    feed = parse_feed(poisoned_document(ref, field, cdata=False), XML, URL)
    poisoned = feed.entries[POISON_AT]
    assert without_poisoned().entries == tuple(others(feed))
    read = poisoned.title if field == "title" else html_to_text(poisoned.summary_html)
    assert "Alerte \ufffd sur le cognac" == read
    assert (CLEANED,) == feed.notices
    assert feed.warning is None


@pytest.mark.parametrize("field", ["title", "summary"])
@pytest.mark.parametrize(("ref", "as_html"), INVALID_REFS, ids=REF_IDS)
def test_a_reference_inside_cdata_is_text_read_as_html_and_nothing_is_cleaned(
    ref: str, as_html: str, field: str
) -> None:
    feed = parse_feed(poisoned_document(ref, field, cdata=True), XML, URL)
    poisoned = feed.entries[POISON_AT]
    assert without_poisoned().entries == tuple(others(feed))
    read = poisoned.title if field == "title" else html_to_text(poisoned.summary_html)
    assert " ".join(f"Alerte {as_html} sur le cognac".split()) == read
    assert () == feed.notices


@pytest.mark.parametrize(
    ("field", "cdata", "fast_accepts"),
    [("title", False, True), ("summary", False, True), ("summary", True, True), ("title", True, False)],
)
@pytest.mark.parametrize(("ref", "as_html"), INVALID_REFS, ids=REF_IDS)
def test_fast_path_and_feedparser_agree_on_poisoned_documents(
    ref: str, as_html: str, field: str, cdata: bool, fast_accepts: bool
) -> None:
    body = poisoned_document(ref, field, cdata)
    fast = fast_path(body, XML, URL)
    slow = feedparser_path(body, XML, URL)
    assert isinstance(slow, ParsedFeed), slow
    assert fast_accepts == (fast is not None)  # a title holding "&#" goes to feedparser, as before
    if fast is not None:
        assert (comparable(fast), fast.notices) == (comparable(slow), slow.notices)
    assert parse_feed(body, XML, URL) == (fast if fast is not None else slow)


RAW_PIECES = st.sampled_from(
    [
        *(ref for ref, _ in INVALID_REFS[:5] + INVALID_REFS[7:]),
        "&#65;",
        "&#x80;",
        "&#x9;",
        "&#13;",
        "&#xFFFD;",
        "&#x1F600;",
        "&#" + "0" * 12 + "66;",
        "&amp;#" + "9" * 30 + ";",
        "&lt;b&gt;",
        "&amp;",
        "<![CDATA[&#xD800; x]]>",
        "<![CDATA[<p>&#1;</p>]]>",
        "<!-- &#0; -->",
        "mot",
        " ",
        "é",
    ]
)
RAW_TEXT = st.lists(RAW_PIECES, max_size=6).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(RAW_TEXT, RAW_TEXT), min_size=1, max_size=4), RAW_TEXT)
def test_generated_poisoned_documents_are_equal_on_both_paths(
    fields: list[tuple[str, str]], channel_title: str
) -> None:
    """Titles and descriptions written raw: XML references valid or not, in CDATA or comments, escaped HTML."""
    items = [
        {"title": f"T{n}", "link": f"https://x.test/{n}", "description": f"D{n}"} for n in range(len(fields))
    ]
    body = make_rss(items, title="CHANNEL-MARK").replace(b"CHANNEL-MARK", channel_title.encode())
    for n, (title, description) in enumerate(fields):
        body = body.replace(f"<title>T{n}</title>".encode(), f"<title>{title}</title>".encode())
        body = body.replace(f">D{n}<".encode(), f">{description}<".encode())
    slow = feedparser_path(body, XML, URL)
    assert isinstance(slow, ParsedFeed), slow
    assert len(fields) == len(slow.entries)
    fast = fast_path(body, XML, URL)
    if fast is not None:
        assert (comparable(fast), fast.notices) == (comparable(slow), slow.notices)


@pytest.fixture(scope="module")
def pool() -> Iterator[ParserPool]:
    with ParserPool(max_workers=2) as parser_pool:
        yield parser_pool


@pytest.mark.parametrize("field", ["title", "summary"])
@pytest.mark.parametrize(("ref", "as_html"), INVALID_REFS[:8], ids=REF_IDS[:8])
async def test_a_worker_process_keeps_the_feed_of_a_poisoned_item(
    pool: ParserPool, ref: str, as_html: str, field: str
) -> None:
    body = poisoned_document(ref, field, cdata=False)
    feed = await pool.parse(body, XML, URL)
    assert parse_feed(body, XML, URL) == feed
    assert without_poisoned().entries == tuple(others(feed))
    assert (CLEANED,) == feed.notices


def test_references_in_the_feeds_own_fields_have_their_own_notice() -> None:
    body = with_poisoned(b"&#0;", b"x").replace(
        b"<language>fr</language>", b"<language>fr&#xD800;</language>"
    )
    feed = parse_feed(body, XML, URL)
    assert (
        CLEANED,
        "the feed's own fields had invalid character references, cleaned (replaced by U+FFFD)",
    ) == (feed.notices)


def test_items_with_references_are_counted_once_each() -> None:
    items = good_items()
    items[0]["title"] = items[3]["title"] = "TWICE &#xD800; &#0;"
    body = make_rss(items).replace(b"&amp;#xD800; &amp;#0;", b"&#xD800; &#0;")
    feed = parse_feed(body, XML, URL)
    assert ("2 items with invalid character references cleaned (replaced by U+FFFD)",) == feed.notices
    assert ["TWICE \ufffd \ufffd"] * 2 == [feed.entries[0].title, feed.entries[3].title]


def test_a_utf16_document_is_cleaned_too() -> None:
    text = poisoned_document("&#xD800;", "title", cdata=False).decode()
    body = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    feed = parse_feed(body, "application/xml", URL)
    assert "Alerte \ufffd sur le cognac" == feed.entries[POISON_AT].title
    assert [e.title for e in without_poisoned().entries] == [e.title for e in others(feed)]
    assert (CLEANED,) == feed.notices


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<a>&#0;</a>", b"<a>&#xFFFD;</a>"),
        (b"<a>&#xd800;&#65535;&#8;&#11;</a>", b"<a>&#xFFFD;&#xFFFD;&#xFFFD;&#xFFFD;</a>"),
        (b"<a>&#9;&#10;&#13;&#x20;&#xD7FF;&#xE000;&#xFFFD;&#x10000;&#x10FFFF;&#233;</a>", None),
        (b"<a><![CDATA[&#0;]]>&#0;</a>", b"<a><![CDATA[&#0;]]>&#xFFFD;</a>"),
        (b"<a><!-- &#0; --></a>", None),
        (b"<a><!-- <![CDATA[ --> &#0; ]]></a>", b"<a><!-- <![CDATA[ --> &#xFFFD; ]]></a>"),
        (
            b"<a><![CDATA[ never closed &#0; <![CDATA[ &#1;</a>",
            b"<a><![CDATA[ never closed &#xFFFD; <![CDATA[ &#xFFFD;</a>",
        ),
        (b"<a>&#x" + b"0" * 20 + b"41;&#" + b"0" * 9 + b"65;</a>", b"<a>&#x41;&#x41;</a>"),
        (b"<a>&#;&#x;&#xZ1;&#12</a>", None),
    ],
)
def test_clean_char_refs(body: bytes, expected: bytes | None) -> None:
    assert (body if expected is None else expected) == clean_char_refs(body).body


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"<item>", b"x", b"&#0;", b"&#99999999999;", b"&#xD800;", b"&#65;", b"&#" + b"0" * 9 + b"65;"]
        )
    )
)
def test_offsets_in_a_cleaned_document_map_back(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    clean = clean_char_refs(body)
    cleaned_starts = [i for i in range(len(clean.body)) if clean.body.startswith(b"<item>", i)]
    original_starts = [i for i in range(len(body)) if body.startswith(b"<item>", i)]
    assert original_starts == [clean.original_offset(i) for i in cleaned_starts]
    assert len(body) == clean.original_offset(len(clean.body))


# --- incremental parsing over cleaned documents --------------------------------------------------------------


def test_item_spans_are_in_the_bytes_received() -> None:
    body = with_poisoned(b"&#99999999999; &#0; &#x110000;", b"&amp;#0;")  # 14 and 4 bytes -> 8 each
    feed = parse_feed(body, XML, URL)
    assert feed.item_spans is not None and len(feed.entries) == len(feed.item_spans)
    pieces = [body[start:end] for start, end in feed.item_spans]
    assert all(piece.startswith(b"<item>") and piece.endswith(b"</item>") for piece in pieces)
    assert b"&#99999999999; &#0;" in pieces[POISON_AT]


async def test_incremental_parse_reuses_and_adds_poisoned_items(pool: ParserPool) -> None:
    layouts = Layouts()
    first = with_poisoned(b"Vieux &#99999999999; titre", b"x")
    await incremental.parse(pool, layouts, "feed", first, XML, URL)
    newcomer = dict(POISONED, title="NEW-MARK", link="https://x.test/new", guid="https://x.test/new")
    second = make_rss([newcomer, *good_items()[:POISON_AT], POISONED, *good_items()[POISON_AT:]])
    second = second.replace(b"NEW-MARK", b"Nouveau &#0; titre").replace(
        b"TITLE-MARK", b"Vieux &#99999999999; titre"
    )
    second = second.replace(b"SUMMARY-MARK", b"x")
    got = await incremental.parse(pool, layouts, "feed", second, XML, URL)
    assert set(range(1, 6)) == got.reused, "only the new item was parsed, in a reduced document"
    assert_same(got, parse_feed(second, XML, URL))
    assert ["Nouveau \ufffd titre", "Vieux \ufffd titre"] == [
        got.feed.entries[0].title,
        got.feed.entries[3].title,
    ]


# --- field caps ----------------------------------------------------------------------------------------------


def big_summary(size: int = 9_000_000) -> str:
    paragraph = "<p>" + "Le cognac charentais face aux droits de douane chinois. " * 10 + "</p>"
    return paragraph * (size // len(paragraph))


def with_big(summary: str, count: int = 20) -> tuple[bytes, list[dict[str, Any]]]:
    good = good_items(count)
    big = {
        "title": "Énorme",
        "link": "https://x.test/big",
        "guid": "https://x.test/big",
        "description": summary,
    }
    return make_rss([*good[:10], big, *good[10:]]), good


def test_a_9_mb_summary_is_cut_to_its_cap_and_the_feed_kept() -> None:
    summary = big_summary()
    body, good = with_big(summary)
    assert len(body) < BODY_CAP
    feed = parse_feed(body, XML, URL)
    assert without_poisoned(good).entries == tuple(others(feed, at=10))
    text = html_to_text(feed.entries[10].summary_html)
    assert len(text) <= MAX_SUMMARY < len(feed.entries[10].summary_html) + 100
    assert text.endswith("…") and html_to_text(summary).startswith(text[:-1])
    assert "Énorme" == feed.entries[10].title
    assert ("1 item's summary cut to 65,536 characters of text",) == feed.notices


def test_a_capped_summary_is_the_same_string_on_both_paths() -> None:
    body, _ = with_big(big_summary(300_000), count=3)
    fast, slow = fast_path(body, XML, URL), feedparser_path(body, XML, URL)
    assert fast is not None and isinstance(slow, ParsedFeed)
    assert (comparable(fast), fast.notices) == (comparable(slow), slow.notices)
    assert fast.entries[3].summary_html == slow.entries[3].summary_html


async def test_a_9_mb_summary_crosses_the_process_boundary_capped(pool: ParserPool) -> None:
    body, good = with_big(big_summary())
    feed = await pool.parse(body, XML, URL)
    assert len(pickle.dumps(feed)) < 200_000
    assert without_poisoned(good).entries == tuple(others(feed, at=10))
    assert ("1 item's summary cut to 65,536 characters of text",) == feed.notices


def test_a_summary_whose_markup_only_is_over_the_cap_keeps_its_text_without_notice() -> None:
    summary = "<p>Texte court.</p>" + '<span class="vide"></span>' * 5000
    body, _ = with_big(summary, count=3)
    feed = parse_feed(body, XML, URL)
    assert "Texte court." == html_to_text(feed.entries[3].summary_html)
    assert len(feed.entries[3].summary_html) < 100
    assert () == feed.notices


LONG_GUID = "urn:bfm:" + "g" * 3000
FIELD_CAPS: list[tuple[str, dict[str, Any], Callable[[ParsedFeed], object], object, str]] = [
    (
        "title",
        {"title": "mot " * 1500},
        lambda feed: feed.entries[POISON_AT].title,
        ("mot " * 250).strip() + "…",
        "1 item's title cut to 1,000 characters",
    ),
    (
        "link",
        {"link": "https://x.test/" + "a" * 3000, "guid": None},
        lambda feed: feed.entries[POISON_AT].link,
        None,
        "1 item's link dropped (longer than 2,048 characters)",
    ),
    (
        "guid",
        {"guid": LONG_GUID},
        lambda feed: feed.entries[POISON_AT].guid,
        "sha256:" + hashlib.sha256(LONG_GUID.encode()).hexdigest(),
        "1 item's GUID replaced by its SHA-256 (longer than 2,048 characters)",
    ),
    (
        "author",
        {"author": "Rédaction " * 30},
        lambda feed: feed.entries[POISON_AT].author,
        ("Rédaction " * 25).strip() + "…",
        "1 item's author cut to 256 characters",
    ),
]


@pytest.mark.parametrize(
    ("kind", "fields", "read", "expected", "notice"), FIELD_CAPS, ids=[c[0] for c in FIELD_CAPS]
)
def test_each_field_is_capped_the_same_on_both_paths(
    kind: str, fields: dict[str, Any], read: Callable[[ParsedFeed], object], expected: object, notice: str
) -> None:
    item = {"title": "Titre", "link": "https://x.test/p", "guid": "https://x.test/p", "lede": "x", **fields}
    good = good_items()
    body = make_rss([*good[:POISON_AT], item, *good[POISON_AT:]])
    feed = parse_feed(body, XML, URL)
    assert expected == read(feed)
    assert without_poisoned().entries == tuple(others(feed))
    assert (notice,) == feed.notices
    slow = feedparser_path(body, XML, URL)
    assert isinstance(slow, ParsedFeed)
    assert (comparable(feed), feed.notices) == (comparable(slow), slow.notices)


def test_the_feeds_own_title_and_link_are_capped() -> None:
    body = make_rss(good_items(), title="Titre " * 400, link="https://www.bfmtv.com/" + "e" * 3000)
    feed = parse_feed(body, XML, URL)
    assert (feed.title or "").endswith("…") and len(feed.title or "") <= 1000
    assert feed.link is None
    assert (
        "the feed's title cut to 1,000 characters",
        "the feed's link dropped (longer than 2,048 characters)",
    ) == feed.notices


def test_every_real_bfm_item_is_kept_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caps are far above real data: the 16,694 BFM items parse exactly as they would without caps."""
    bodies = [make_rss(chunk) for chunk in bfm_chunks()]
    capped = [parse_feed(body, XML, URL) for body in bodies]
    monkeypatch.setattr(fastparse, "capped", lambda feed: feed)
    monkeypatch.setattr(parse, "capped", lambda feed: feed)
    assert [parse_feed(body, XML, URL) for body in bodies] == capped
    assert all(() == feed.notices for feed in capped)
    assert len(bodies) > 300


# --- entries that fail to convert ----------------------------------------------------------------------------


def failing_on(title: str, error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the conversion of the entry titled ``title`` raise ``error`` (a bug or hostile input we missed)."""
    real = vars(parse)["_summary_html"]

    def summary_html(raw: Any) -> str:
        if raw.get("title") == title:
            raise error
        result: str = real(raw)
        return result

    monkeypatch.setattr(parse, "_summary_html", summary_html)


def test_an_entry_that_fails_to_convert_is_dropped_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_on("Empoisonné", ValueError("boom\nsecond line"), monkeypatch)
    good = good_items()
    body = make_rss(
        [*good[:POISON_AT], {"title": "Empoisonné", "link": "https://x.test/p"}, *good[POISON_AT:]]
    )
    feed = feedparser_path(body, XML, URL)
    assert isinstance(feed, ParsedFeed)
    assert [e.title for e in without_poisoned().entries] == [e.title for e in feed.entries]
    assert ("item 3 dropped: ValueError: boom second line",) == feed.notices


def test_many_dropped_entries_make_a_bounded_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_on("Empoisonné", RuntimeError("boom"), monkeypatch)
    body = make_rss(
        [{"title": "Empoisonné", "link": f"https://x.test/{n}"} for n in range(8)] + good_items(1)
    )
    feed = feedparser_path(body, XML, URL)
    assert isinstance(feed, ParsedFeed)
    assert 1 == len(feed.entries)
    assert [f"item {n} dropped: RuntimeError: boom" for n in range(1, 6)] + ["3 more items dropped"] == list(
        feed.notices
    )


def test_a_memory_error_is_not_taken_for_one_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_on("Empoisonné", MemoryError(), monkeypatch)
    body = make_rss([{"title": "Empoisonné", "link": "https://x.test/p"}, *good_items()])
    assert "parse worker memory limit exceeded" == feedparser_path(body, XML, URL)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (
            "Alerte <![foo[ cachée ]]> cognac",
            "Alerte cognac",
        ),  # AssertionError in _markupbase: the feed failed
        ("Alerte <![ cognac", "Alerte <![ cognac"),
        (
            "Alerte &#" + "9" * 5000 + "; cognac",
            "Alerte \ufffd cognac",
        ),  # ValueError in int(): the feed failed
    ],
)
def test_titles_that_made_the_text_extraction_raise_are_kept(title: str, expected: str) -> None:
    good = good_items()
    body = make_rss([*good[:POISON_AT], {"title": title, "link": "https://x.test/p"}, *good[POISON_AT:]])
    feed = parse_in_worker(body, XML, URL)
    assert isinstance(feed, ParsedFeed), feed
    assert expected == feed.entries[POISON_AT].title
    assert without_poisoned().entries == tuple(others(feed))


# --- the text helpers the caps use ---------------------------------------------------------------------------

MARKUP = st.lists(
    st.sampled_from(
        [
            "<p>",
            "</p>",
            "<br/>",
            "<b>",
            "</b>",
            "<script>x</script>",
            "<!-- c -->",
            "<![foo[ x ]]>",
            "<![ ",
            "&amp;",
            "&eacute;",
            "&#233;",
            "&#" + "9" * 40 + ";",
            "&",
            "<",
            " ",
            "\n",
            "\u00a0",
            "\u200b",
            "\u3000",
            "mot",
            "é",
            '<a href="x">',
            "</a>",
            "<span",
            ">",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKUP)
def test_html_to_text_never_raises(html: str) -> None:
    assert html_to_text(html) == html_to_text_by_parser(html)


@settings(max_examples=300, deadline=None)
@given(MARKUP, st.integers(1, 40), st.integers(1, 16))
def test_html_text_head_is_the_beginning_of_the_text(html: str, limit: int, chunk: int) -> None:
    assert html_to_text_by_parser(html)[:limit] == html_text_head(html, limit, chunk=chunk)


@settings(max_examples=300, deadline=None)
@given(MARKUP, st.integers(2, 40))
def test_a_cut_text_as_html_reads_back_as_the_cut_text(html: str, limit: int) -> None:
    text = cut_text(html_to_text(html), limit)
    assert len(text) <= limit
    assert text == html_to_text(text_to_html(text))
    if text.endswith("…"):
        assert html_to_text(html).startswith(text[:-1])


def test_cut_text_ends_at_a_word() -> None:
    assert "un deux…" == cut_text("un deux trois quatre", 10)
    assert "abcdefghi…" == cut_text("abcdefghijklmnop", 10)
    assert "court" == cut_text("court", 10)


def test_random_poisoned_feeds_keep_their_good_items() -> None:
    """Several poisoned items at random places, any reference form: the good items never change."""
    rnd = random.Random(43)
    for _ in range(30):
        good = good_items(6)
        poisoned = rnd.sample(range(8), 2)
        items: list[dict[str, Any]] = list(good)
        for at in sorted(poisoned):
            items.insert(at, dict(POISONED, link=f"https://x.test/p{at}", guid=f"https://x.test/p{at}"))
        ref = rnd.choice(INVALID_REFS)[0]
        body = make_rss(items).replace(b"TITLE-MARK", f"a {ref} b".encode()).replace(b"SUMMARY-MARK", b"x")
        feed = parse_feed(body, XML, URL)
        kept = [entry for entry in feed.entries if entry.title != "a \ufffd b"]
        assert without_poisoned(good).entries == tuple(kept)
        assert ("2 items with invalid character references cleaned (replaced by U+FFFD)",) == feed.notices
