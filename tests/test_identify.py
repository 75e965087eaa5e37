"""identify.py: URL canonicalisation, identity keys and story keys (RELIABILITY I1, I2, I6; matrix 18-20)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.identify import EntryKey, canonical_url, entry_keys, link_key, make_items
from alertd.models import Entry, Item
from alertd.parse import parse_feed
from tests.feedserver import make_rss

UTC = timezone.utc
NOW = datetime(2024, 9, 8, 12, 0, tzinfo=UTC)
ECO = "https://www.bfmtv.com/rss/economie/"
INTL = "https://www.bfmtv.com/rss/economie/international/"
ARTICLE = "https://www.bfmtv.com/economie/international/cognac_AV-202409080001.html"


def items_of(entries: list[Entry], feed_url: str = ECO) -> tuple[Item, ...]:
    return make_items(entries, entry_keys(entries, feed_url), feed_url, "BFM Éco", frozenset({"fr"}), NOW)


def story_key(entry: Entry) -> str:
    """The key shared by every feed carrying this entry's story."""
    return entry_keys([entry], ECO)[0].story_key


def item_link_key(identified: Item | EntryKey) -> str | None:
    return identified.link_key


def keys(entries: list[Entry], feed_url: str = ECO) -> list[str]:
    return [item.key for item in items_of(entries, feed_url)]


# --- canonical URLs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://WWW.BFMTV.COM/Economie/A.html", "https://www.bfmtv.com/Economie/A.html"),
        ("https://www.bfmtv.com:443/a", "https://www.bfmtv.com/a"),
        ("http://www.bfmtv.com:80/a", "http://www.bfmtv.com/a"),
        ("http://www.bfmtv.com:8080/a", "http://www.bfmtv.com:8080/a"),
        ("https://www.bfmtv.com/a#comments", "https://www.bfmtv.com/a"),
        ("https://www.bfmtv.com", "https://www.bfmtv.com/"),
        ("https://x.test/a?utm_source=rss&utm_medium=feed", "https://x.test/a"),
        ("https://x.test/a?id=3&xtor=RSS-1&fbclid=abc&gclid=x", "https://x.test/a?id=3"),
        ("https://x.test/a?mc_cid=1&mc_eid=2&at_medium=rss&at_campaign=c&ref=tw", "https://x.test/a"),
        ("https://x.test/a?b=2&a=1&c=%20x", "https://x.test/a?a=1&b=2&c=%20x"),
        ("https://x.test/a?UTM_Source=x&page=2", "https://x.test/a?page=2"),
        (
            "https://www.heise.de/meldung/x.html?wt_mc=rss.ho.beitrag.rdf",
            "https://www.heise.de/meldung/x.html",
        ),
        ("  https://x.test/a  ", "https://x.test/a"),
        ("https://[2001:DB8::1]:443/a", "https://[2001:db8::1]/a"),
        ("http://x.test:99999/a", "http://x.test:99999/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert expected == canonical_url(url)


def test_link_key_ignores_scheme() -> None:
    assert link_key("http://www.bfmtv.com/a?utm_source=x") == link_key("https://WWW.bfmtv.com/a#top")
    assert link_key("https://www.bfmtv.com/a") == "www.bfmtv.com/a"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_canonical_url_never_raises_and_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert once == canonical_url(once)


# --- identity keys (I1) ---------------------------------------------------------------------------------------------


def test_guid_identifies_and_survives_link_and_title_edits() -> None:
    before = Entry(guid="AV-1", link=ARTICLE, title="Cognac", summary_html="")
    after = Entry(guid="AV-1", link=ARTICLE + "?v=2", title="Cognac : la Chine taxe", summary_html="maj")
    assert keys([before]) == keys([after])


def test_same_guid_in_two_feeds_gives_distinct_keys_and_one_story() -> None:
    entry = Entry(guid="AV-1", link=ARTICLE, title="Cognac", summary_html="")
    (eco,), (intl,) = items_of([entry], ECO), items_of([entry], INTL)
    assert eco.key != intl.key
    assert eco.story_key == intl.story_key


def test_duplicate_guids_get_distinct_stable_keys() -> None:
    entries = [
        Entry(guid="dup", link="https://x.test/1", title="Un", summary_html=""),
        Entry(guid="dup", link="https://x.test/2", title="Deux", summary_html=""),
        Entry(guid="dup", link=None, title="Trois", summary_html=""),
        Entry(guid="dup", link=None, title="Quatre", summary_html=""),
        Entry(guid="dup", link="https://x.test/1", title="Un bis", summary_html=""),
    ]
    first = keys(entries)
    assert len(entries) == len(set(first))
    assert first == keys(list(entries))


def test_entries_without_guid_use_link_then_content() -> None:
    by_link = Entry(guid=None, link="https://x.test/a?utm_source=rss", title="A", summary_html="")
    same_link = Entry(guid=None, link="http://x.test/a", title="A (mis à jour)", summary_html="")
    by_content = Entry(guid=None, link=None, title="Sans lien", summary_html="<p>Texte</p>")
    same_content = Entry(guid=None, link=None, title="Sans  lien", summary_html="Texte")
    assert keys([by_link]) == keys([same_link])
    assert keys([by_content]) == keys([same_content])
    assert keys([by_link]) != keys([by_content])


def test_items_without_guid_or_link_keep_keys_across_two_parses() -> None:
    body = make_rss([{"title": f"Brève {i}", "lede": f"Texte {i}"} for i in range(20)])
    first = [i.key for i in items_of(list(parse_feed(body, None, ECO).entries))]
    second = [i.key for i in items_of(list(parse_feed(body, None, ECO).entries))]
    assert first == second
    assert len(set(first)) == 20


def test_five_thousand_item_feed_is_parsed_and_fully_identified() -> None:
    rows = [
        {
            "title": f"Article {i}",
            "link": f"https://www.bfmtv.com/economie/article-{i}.html",
            "guid": f"AN-{i}",
            "lede": "Lorem ipsum " * 40,
            "image": f"https://images.bfmtv.com/{i}.jpg",
            "pub_date": NOW - timedelta(minutes=i),
        }
        for i in range(5000)
    ]
    body = make_rss(rows)
    started = time.monotonic()
    items = items_of(list(parse_feed(body, None, ECO).entries))
    assert time.monotonic() - started < 10
    assert len({item.key for item in items}) == 5000


# --- items ----------------------------------------------------------------------------------------------------------


def test_item_carries_plain_text_summary_and_feed_fields() -> None:
    entry = Entry(
        guid="AV-1",
        link=ARTICLE,
        title="Cognac",
        summary_html='Les producteurs &amp; négociants<br /><br /><img src="https://images.bfmtv.com/c.jpg">',
        published=NOW - timedelta(hours=2),
    )
    (item,) = items_of([entry])
    assert item.summary_text == "Les producteurs & négociants"
    assert (ARTICLE, "BFM Éco", frozenset({"fr"}), ECO) == (
        item.link,
        item.feed_name,
        item.feed_tags,
        item.feed_url,
    )
    assert NOW - timedelta(hours=2) == item.published


def test_future_publication_date_is_clamped_to_now_plus_one_hour() -> None:
    entry = Entry(guid="g", link=None, title="t", summary_html="", published=NOW + timedelta(days=30))
    assert NOW + timedelta(hours=1) == items_of([entry])[0].published


def test_non_web_link_is_dropped() -> None:
    entry = Entry(guid="g", link="javascript:alert(1)", title="t", summary_html="")
    (item,) = items_of([entry])
    assert item.link is None
    assert item.story_key.startswith("title:")


@pytest.mark.parametrize(
    "summary", ["<p>unclosed <b>bold", "<![CDATA[x]]> <!-- c", "<<<>>>&&&;", "</p></div>"]
)
def test_malformed_summary_html_does_not_break_identify(summary: str) -> None:
    (item,) = items_of([Entry(guid="g", link=None, title="t", summary_html=summary)])
    assert "<b>" not in item.summary_text


# --- story keys (I2) ------------------------------------------------------------------------------------------------


def test_story_key_equal_for_same_link_in_two_feeds_despite_tracking_and_scheme() -> None:
    eco = Entry(guid="eco-1", link=ARTICLE + "?xtor=RSS-1", title="Cognac", summary_html="")
    intl = Entry(guid="intl-9", link=ARTICLE.replace("https", "http"), title="Cognac !", summary_html="")
    assert story_key(eco) == story_key(intl)


def test_story_key_without_link_uses_normalised_title() -> None:
    a = Entry(guid=None, link=None, title="Cognac :  la Chine taxe", summary_html="")
    b = Entry(guid=None, link=None, title="COGNAC : la chine taxe", summary_html="autre")
    assert story_key(a) == story_key(b)


def test_entry_keys_are_the_items_identity_without_their_text() -> None:
    entries = [
        Entry(guid="g1", link=ARTICLE, title="Cognac", summary_html="<p>droits</p>"),
        Entry(guid=None, link=None, title="Sans lien", summary_html="<p>texte</p>"),
        Entry(guid=None, link="javascript:alert(1)", title="Lien refusé", summary_html=""),
    ]
    items = items_of(entries)
    assert [(i.key, i.link, i.story_key, item_link_key(i)) for i in items] == [
        (k.key, k.link, k.story_key, item_link_key(k)) for k in entry_keys(entries, ECO)
    ]
    assert [None, None] == [item_link_key(k) for k in entry_keys(entries, ECO)[1:]]


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("http://[bad", "http://[bad"),  # urlsplit raises on it: kept as written, keyed as written
        ("ftp://[bad", None),
        ("https://www.bfmtv.com:99999/a", "https://www.bfmtv.com:99999/a"),  # port out of range
        (" HTTPS://www.bfmtv.com/a ", "HTTPS://www.bfmtv.com/a"),
        ("javascript:alert(1)", None),
        ("/relative/path", None),
    ],
)
def test_broken_links_of_a_hostile_feed_never_fail_the_poll(link: str, expected: str | None) -> None:
    (item,) = items_of([Entry(guid=None, link=link, title="Titre", summary_html="")])
    assert expected == item.link
