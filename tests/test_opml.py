"""OPML import and export: real-world malformed files, the feeds file the config includes, round trips."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alertd import feedsfile
from alertd.config import FeedConfig, load_config
from alertd.errors import ConfigError
from alertd.opml import OpmlError, OpmlFeed, read_opml, write_opml

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = Path(__file__).parent / "data" / "opml"


@pytest.mark.parametrize(
    ("name", "count", "tag", "url_with_ampersand"),
    [
        ("plenary_business_economy.opml", 16, "Business & Economy", None),
        (
            "plenary_france.opml",
            11,
            "France",
            "https://www.diplomatie.gouv.fr/spip.php?page=backend-fd&lang=en",
        ),
    ],
)
def test_real_malformed_opml_files_import(
    name: str, count: int, tag: str, url_with_ampersand: str | None
) -> None:
    path = SHARED / "data" / "feeds" / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    feeds = read_opml(path.read_bytes())
    assert len(feeds) == count
    assert all(feed.tags == (tag,) for feed in feeds)
    assert all(feed.url.startswith(("https://", "http://")) for feed in feeds)
    if url_with_ampersand:
        assert url_with_ampersand in {feed.url for feed in feeds}


def test_broken_xml_falls_back_to_scanning_outlines() -> None:
    feeds = read_opml((DATA / "malformed.opml").read_bytes())
    assert feeds[0] == OpmlFeed(
        url="https://syndication.lesechos.fr/rss/rss_france.xml?a=1&b=2",
        name="Les Echos & Co",
        tags=("Économie & Bourse", "fr", "business"),
    )
    assert [f.name for f in feeds] == ["Les Echos & Co", "Pas http", "Nikkei Asia"]
    assert feeds[2].tags == ()


def test_entity_declarations_are_refused() -> None:
    laughs = '<?xml version="1.0"?><!DOCTYPE o [<!ENTITY a "aaaa">]><opml><body><outline xmlUrl="&a;"/></body></opml>'
    with pytest.raises(OpmlError):
        read_opml(laughs)


def test_export_then_import_round_trips() -> None:
    feeds = [
        FeedConfig(url="https://a.test/rss?x=1&y=2", name='Les "Echos" <éco>', tags=("fr", "business")),
        FeedConfig(url="https://b.test/feed", name="Plain"),
    ]
    back = read_opml(write_opml(feeds))
    assert [(f.url, f.name, f.tags) for f in back] == [(f.url, f.name, f.tags) for f in feeds]


def write_config(tmp_path: Path, body: str = "") -> Path:
    (tmp_path / "watchlist.toml").write_text('[[topic]]\nid = "t"\nany = ["x"]\n', encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_imported_feeds_are_part_of_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[[feed]]\nurl = "https://main.test/rss"\n')
    (tmp_path / "feeds.toml").write_text(
        feedsfile.add(None, OpmlFeed('https://odd.test/q?a=1&b="2"', 'Nom "cité"\\', ("Éco",))),
        encoding="utf-8",
    )
    config = load_config(path)
    assert [f.url for f in config.feeds] == ["https://main.test/rss", 'https://odd.test/q?a=1&b="2"']
    assert config.feeds[1].name == 'Nom "cité"\\'
    assert config.feeds[1].tags == ("Éco",)
    assert config.feeds_file == tmp_path / "feeds.toml"


def test_problems_in_the_feeds_file_are_located_in_that_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[[feed]]\nurl = "https://main.test/rss"\n')
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(
        '# managed\n\n[[feed]]\nurl = "https://main.test/rss"\n\n[[feed]]\nurl = "gopher://x"\nnmae = "typo"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    messages = [str(p) for p in caught.value.problems]
    assert f"{feeds_file}:4:1: feed[0].url: duplicate feed URL (first at alertd.toml feed[0])" in messages
    assert any(m.startswith(f"{feeds_file}:7:1: feed[1].url: expected an http://") for m in messages)
    assert any(m.startswith(f"{feeds_file}:8:1: feed[1].nmae: unknown key 'nmae'") for m in messages)
