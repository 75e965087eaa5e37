"""fastparse.py: wherever the expat fast path accepts a document, it gives what feedparser's path gives.

Equivalence (see alertd/fastparse.py): every ParsedFeed/Entry field equal, except ``summary_html``, compared
through ``html_to_text`` (the only way anything downstream reads it).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd import parse
from alertd.fastparse import parse_fast
from alertd.models import ParsedFeed
from alertd.text import html_to_text
from tests.feedserver import make_rss

DATA = Path(__file__).parent / "data" / "feeds"
SHARED = Path(__file__).resolve().parents[2] / "shared"
URL = "https://www.bfmtv.com/rss/economie/"
XML = "application/rss+xml; charset=utf-8"  # the Content-Type, as the fetch translated it


def feedparser_path(body: bytes, headers: str | None, url: str) -> ParsedFeed | str:
    """parse.py's feedparser path alone (the fast path switched off)."""
    original = vars(parse)["parse_fast"]
    setattr(parse, "parse_fast", lambda *args: None)  # noqa: B010
    try:
        return parse.parse_in_worker(body, headers, url)
    finally:
        setattr(parse, "parse_fast", original)  # noqa: B010


def fast_path(body: bytes, headers: str | None, url: str) -> ParsedFeed | None:
    return parse_fast(body, headers, parse.base_uri(url))


def comparable(feed: ParsedFeed) -> Any:
    entries = [
        (e.guid, e.link, e.title, html_to_text(e.summary_html), e.published, e.author) for e in feed.entries
    ]
    return (feed.title, feed.link, feed.ttl_minutes, feed.warning, entries)


def check(body: bytes, headers: str | None = XML, url: str = URL) -> bool:
    """Assert equivalence if the fast path accepts; True when it accepted."""
    fast = fast_path(body, headers, url)
    if fast is None:
        return False
    slow = feedparser_path(body, headers, url)
    assert isinstance(slow, ParsedFeed), slow
    assert comparable(fast) == comparable(slow)
    # and parse_feed, the production entry point, gives the fast result
    assert parse.parse_feed(body, headers, url) == fast
    return True


def shared_files() -> list[Path]:
    folder = SHARED / "data" / "feeds"
    return (
        sorted(p for p in folder.glob("*") if p.suffix in (".xml", ".rss", ".atom"))
        if folder.exists()
        else []
    )


@pytest.mark.parametrize("path", sorted(DATA.iterdir()) + shared_files(), ids=lambda p: p.name)
@pytest.mark.parametrize(
    "content_type", ["application/rss+xml; charset=utf-8", "application/xml", "text/xml"]
)
def test_files_equal_when_accepted(path: Path, content_type: str) -> None:
    check(path.read_bytes(), content_type)


def bfm_chunks() -> Iterator[list[dict[str, Any]]]:
    items_file = SHARED / "data" / "bfm" / "items.jsonl"
    if not items_file.exists():
        pytest.skip("no ../shared/data/bfm/items.jsonl")
    lines = items_file.read_text(encoding="utf-8").splitlines()
    items = []
    for line in lines:
        raw = json.loads(line)
        items.append(
            {
                "title": raw.get("title"),
                "link": raw.get("link"),
                "guid": raw.get("id"),
                "lede": raw.get("summary"),
                "image": raw.get("image"),
                "pub_date": raw.get("published"),
            }
        )
    for start in range(0, len(items), 50):
        yield items[start : start + 50]


def test_bfm_items_equal_when_accepted() -> None:
    accepted = total = 0
    for chunk in bfm_chunks():
        total += 1
        accepted += check(make_rss(chunk, ttl=15))
    assert total > 300
    assert accepted > total // 2, (accepted, total)  # the fast path does serve most BFM-like documents


def test_feedfarm_documents_equal_and_accepted() -> None:
    farm = SHARED / "tools" / "feedfarm.py"
    if not farm.exists():
        pytest.skip("no ../shared/tools/feedfarm.py")
    sys.path.insert(0, str(farm.parent))
    try:
        import feedfarm  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(farm.parent))
    for i in range(40):
        for gen in (0, 1, 7):
            assert check(feedfarm.render(i, 50, gen), "application/rss+xml; charset=utf-8")
    check(feedfarm.INJECT, "application/rss+xml")


# --- refusals -----------------------------------------------------------------------------------------------------

RSS_OK = make_rss([{"title": "t", "link": "https://x.test/1", "guid": "g1", "description": "<p>x</p>"}])


def test_plain_document_is_accepted() -> None:
    assert check(RSS_OK)


@pytest.mark.parametrize(
    "name",
    [
        "billion_laughs.xml",
        "xxe_file.xml",
        "padded_doctype.xml",
        "garbage.bin",
        "html_page.html",
        "latin1_declared_utf8.xml",
        "atom_html_title.atom",
    ],
)
def test_hostile_or_unusual_fixtures_are_refused(name: str) -> None:
    assert fast_path((DATA / name).read_bytes(), XML, URL) is None


@pytest.mark.parametrize(
    "body",
    [
        RSS_OK.replace(b"<rss", b'<!DOCTYPE rss [<!ENTITY a "b">]><rss'),
        RSS_OK.replace(b"<rss", b'<!DOCTYPE rss SYSTEM "file:///etc/passwd"><rss'),
        RSS_OK.replace(b"<title>t</title>", b"<title>&a;</title>"),
        RSS_OK.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'),
        RSS_OK.replace(b"<title>t</title>", "<title>é</title>".encode("latin-1")),
        RSS_OK.replace(b'version="2.0"', b'version="0.91"'),
        RSS_OK[:-20],
        b"\xef\xbb\xbf" + RSS_OK,
        RSS_OK.replace(b"<rss", b'<?xml-stylesheet href="x"?><rss'),
        RSS_OK.replace(b"<channel>", b'<channel xml:base="https://other.test/">'),
        RSS_OK.replace(b"https://x.test/1", b"/relative"),
        RSS_OK.replace(b"<title>t</title>", b"<title>&lt;b&gt;t&lt;/b&gt;</title>"),
        b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        b' xmlns="http://purl.org/rss/1.0/"><channel><title>x</title></channel></rdf:RDF>',
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>',
    ],
)
def test_fast_path_refuses(body: bytes) -> None:
    assert fast_path(body, XML, URL) is None


@pytest.mark.parametrize(
    "content_type", ["text/html", "text/plain", "application/rss+xml; charset=iso-8859-1", "text/xml", ""]
)
def test_fast_path_refuses_other_content_types(content_type: str) -> None:
    headers = content_type or None
    assert fast_path(RSS_OK, headers, URL) is None


# --- entity references and years: feedparser's reading, not html.unescape's or email.utils' ------------------

LEGACY = ["para", "reg", "curren", "sect", "times", "not", "copy", "amp", "lt"]
"""HTML 4 names html.unescape also decodes without ``;`` (``&param`` is ``¶m`` to it)."""
DECODED = {"para": "¶", "reg": "®", "curren": "¤", "sect": "§", "times": "×", "not": "¬", "copy": "©"}
DECODED |= {"amp": "&", "lt": "<"}


def one_item(**fields: str) -> bytes:
    return make_rss([{"link": "https://x.test/1", "guid": "https://x.test/1", **fields}])


def served(body: bytes) -> ParsedFeed:
    """What the production entry point gives (the fast path when it accepts), after checking equivalence."""
    check(body)
    feed = parse.parse_feed(body, XML, URL)
    slow = feedparser_path(body, XML, URL)
    assert isinstance(slow, ParsedFeed), slow
    assert comparable(feed) == comparable(slow)
    return feed


@pytest.mark.parametrize(
    ("text", "expected"),
    [(f"?id=1&{name}m=2", f"?id=1&{name}m=2") for name in LEGACY]
    + [
        ("&foo; x", "&foo x"),  # an unknown name: feedparser drops the ';'
        ("&check; x", "&check x"),  # an HTML 5 name is unknown to feedparser
        ("&hellip x", "… x"),  # an HTML 4 name without ';': decoded by feedparser, not by html.unescape
        ("&notin x", "∉ x"),  # ... and not read as &not + "in"
        ("&AMP x", "&AMP x"),  # a legacy HTML 5 name unknown to feedparser
        ("&para.x y", "&para.x y"),  # '.' and '-' belong to the name for feedparser
        ("<p>a&param=2</p>", "a&param=2"),
    ],
)
def test_summary_references_read_as_feedparser_reads_them(text: str, expected: str) -> None:
    """feedparser's sanitiser reads ``&name`` + any non-alphanumeric character as a reference and rewrites it;
    html.unescape decodes a legacy name as a prefix (``&param=2`` read ``¶m=2`` on the fast path)."""
    feed = served(one_item(description=text))
    assert html_to_text(feed.entries[0].summary_html) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(f"a &{name} b", f"a {DECODED[name]} b") for name in LEGACY]
    + [(f"a &{name};b", f"a {DECODED[name]}b") for name in LEGACY]
    + [(f"?a&{name}=2", f"?a{DECODED[name]}=2") for name in LEGACY]
    + [
        ("?id=1&foo=1", "?id=1&foo=1"),
        ("R&D, AT&T", "R&D, AT&T"),
        ("<b>&para</b>&copy<br>", "¶©"),
        ("the end &paramount", "the end ¶mount"),  # a name at the very end is left as written
        ("&#233 &#233; &#x41 &#X41; &#150;", "é é A A –"),
    ],
)
def test_summary_references_read_alike_stay_on_the_fast_path(text: str, expected: str) -> None:
    """References both readers decode, or both leave literal, do not cost the fast path."""
    body = one_item(description=text)
    assert check(body)
    assert html_to_text(served(body).entries[0].summary_html) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(f"?id=1&{name}m=2", f"?id=1{DECODED[name]}m=2") for name in LEGACY]
    + [("?id=1&foo=1", "?id=1&foo=1"), ("&foo; x", "&foo; x"), ("&para=1 &amp;", "¶=1 &")],
)
def test_titles_with_references_go_to_feedparser(text: str, expected: str) -> None:
    """A title is plain text to feedparser unless it looks like HTML (then it is sanitised): the fast path leaves
    every entity-like title to it."""
    body = one_item(title=text, description="d")
    assert fast_path(body, XML, URL) is None
    assert served(body).entries[0].title == expected


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 01 Jan 0001 10:00:00 GMT", utc(1, 1, 1, 10)),
        ("Mon, 01 Jan 0050 10:00:00 GMT", utc(50, 1, 1, 10)),
        ("Mon, 01 Jan 0099 10:00:00 +0000", utc(99, 1, 1, 10)),
        ("Mon, 01 Jan 001 10:00:00 GMT", utc(1, 1, 1, 10)),
        ("Mon, 01 Jan 999 10:00:00 GMT", utc(999, 1, 1, 10)),
        ("Mon, 01 Jan 1 10:00:00 GMT", utc(2001, 1, 1, 10)),
        ("Mon, 01 Jan 50 10:00:00 GMT", utc(2050, 1, 1, 10)),
        ("Mon, 01 Jan 70 10:00:00 GMT", utc(2070, 1, 1, 10)),  # email.utils: 1970
        ("Mon, 01 Jan 89 10:00:00 -0100", utc(2089, 1, 1, 11)),
        ("Mon, 01 Jan 90 10:00:00 GMT", utc(1990, 1, 1, 10)),
        ("Fri, 01 Jan 99 10:00:00 GMT", utc(1999, 1, 1, 10)),
        ("Mon, 01 Jan 00 00:30:00 +0100", utc(1999, 12, 31, 23, 30)),
        ("Mon, 01 Jan 2020 10:00:00 +2400", utc(2019, 12, 31, 10)),  # email.utils refuses offsets of a day
    ],
)
def test_years_read_as_feedparser_reads_them(date: str, expected: datetime) -> None:
    """feedparser adds a century only to a year written with one or two digits (20xx below 90); email.utils
    added one to any year below 100, so "0050" was 2050, a future date that made the item look brand new."""
    body = one_item(description="d", pub_date=date)
    assert check(body)
    assert served(body).entries[0].published == expected


@pytest.mark.filterwarnings("ignore:To avoid breaking existing software:DeprecationWarning")
@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 01 Jan 0000 10:00:00 GMT", None),
        ("Mon, 01 Jan 10000 10:00:00 GMT", None),
        # before year 1 in UTC: feedparser's RFC 822 reader gives up, its asctime reader makes it year 100
        ("Mon, 01 Jan 0001 00:30:00 +0100", utc(100, 1, 1, 1)),
    ],
)
def test_dates_out_of_range_go_to_feedparser(date: str, expected: datetime | None) -> None:
    """A date the fast path cannot place is left to feedparser, whatever it makes of it. (Reading
    ``updated_parsed`` when there is no ``published_parsed`` warns: ignored here as it is in production.)"""
    body = one_item(description="d", pub_date=date)
    assert fast_path(body, XML, URL) is None
    assert served(body).entries[0].published == expected


# --- generated documents ------------------------------------------------------------------------------------------

TRICKY = st.sampled_from(
    [
        "&",
        "&amp;",
        "&amp;amp;",
        "&lt;b&gt;",
        "<b>",
        "</b>",
        "<p>",
        "<br/>",
        "<script>x</script>",
        "<![CDATA[",
        "]]>",
        "&#233;",
        "&eacute;",
        "&nbsp;",
        "\u00c3\u00a9",
        "\x85",
        "\u00a0",
        "\u200b",
        " ",
        "\n",
        "\t",
        "'",
        '"',
        "é",
        "Ω",
        "<noscript>n</noscript>",
        '<a href="/rel">a</a>',
        "<img src=x>",
    ]
)
REFERENCE = st.builds(
    "&{}{}".format,
    st.sampled_from(
        [
            *LEGACY,
            *("paramount", "notin", "hellip", "nbsp", "eacute", "apos", "AMP", "check", "foo", "D"),
            *("#233", "#x41", "#X41", "#150", "#0", "#65a"),
        ]
    ),
    st.sampled_from(["", ";", "m", "=", " ", ".", "-", "<br>", "&"]),
)
"""Named and numeric references, with and without ';', and names other text runs into."""
TEXT = st.lists(
    st.one_of(TRICKY, REFERENCE, st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)),
    max_size=8,
).map("".join)
DATES = st.sampled_from(
    [
        "Wed, 02 Sep 2020 10:48:05 GMT",
        "2 Sep 2020 10:48:05 +0200",
        "Wed, 02 Sep 2020 10:48:05 -0930",
        "Wed, 02 Sep 2020 10:48 GMT",
        "Wed, 31 Feb 2020 10:48:05 GMT",
        "garbage",
        "2020-09-02T10:48:05Z",
    ]
)
ODD_DATES = st.builds(
    "{} Jan {} 00:30:00 {}".format,
    st.sampled_from(["Mon, 01", "1"]),
    st.sampled_from(
        ["0", "1", "00", "01", "50", "89", "90", "99", "001", "050", "999", "0000", "0001", "0099", "0100"]
    ),
    st.sampled_from(["GMT", "+0100", "-0100", "+9999"]),
)
"""Years of one to four digits, some below 100, and offsets that move them across a year (or before year 1)."""
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "title": TEXT,
        "link": st.sampled_from(
            [
                "https://x.test/a",
                "http://x.test/a?b=1&c=2",
                "https://x.test/a#f",
                " https://x.test/ ",
                "https://x.test/a?x=&amp;",
            ]
        ),
        "guid": st.one_of(TEXT, st.sampled_from(["https://x.test/g", "g-1"])),
        "description": TEXT,
        "pub_date": st.one_of(DATES, ODD_DATES),
        "author": TEXT,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(ITEM, max_size=4), title=TEXT, cdata=st.booleans())
def test_generated_rss_equal_when_accepted(items: list[dict[str, Any]], title: str, cdata: bool) -> None:
    body = make_rss(items, title=title)
    if cdata:
        for item in items:
            description = item.get("description")
            if description and "]]>" not in description:
                from xml.sax.saxutils import escape

                body = body.replace(
                    f"<description>{escape(description)}</description>".encode(),
                    f"<description><![CDATA[{description}]]></description>".encode(),
                )
    check(body)


def test_fallback_receives_bytes_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """F1: a refused document reaches feedparser as io.BytesIO."""
    seen: list[object] = []
    real = feedparser.parse

    def spy(source: object, **kwargs: Any) -> Any:
        seen.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(feedparser, "parse", spy)
    parse.parse_feed((DATA / "atom_html_title.atom").read_bytes(), None, URL)
    assert len(seen) == 1 and isinstance(seen[0], io.BytesIO)
