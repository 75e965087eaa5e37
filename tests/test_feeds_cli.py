"""``alertd feeds``: each feed's health as a table or JSON, OPML import into the feeds file, OPML export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.store import Store
from tests.storage import add_feed, record_failure, record_poll

NOW = datetime.now(UTC).replace(microsecond=0)
OK_URL = "https://www.bfmtv.com/rss/economie/"
GONE_URL = "https://old.example.org/rss"
FAILING_URL = "https://flaky.example.org/rss"


def alertd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "watchlist.toml").write_text('[[topic]]\nid = "t"\nany = ["x"]\n', encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [[feed]]
            name = "BFM Économie"
            url = "{OK_URL}"
            tags = ["fr"]

            [[feed]]
            name = "Old feed"
            url = "{GONE_URL}"

            [[feed]]
            name = "Flaky"
            url = "{FAILING_URL}"

            [[feed]]
            name = "Never polled"
            url = "https://new.example.org/rss"
            """
        ),
        encoding="utf-8",
    )
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        for url, name in ((OK_URL, "BFM Économie"), (GONE_URL, "Old feed"), (FAILING_URL, "Flaky")):
            add_feed(store, url, name)
            record_poll(store, url, None, None, "h", [], [], [], NOW + timedelta(minutes=15), NOW)
        record_failure(store, GONE_URL, "gone", "HTTP 410 Gone: polling stopped", NOW, None)
        for _ in range(3):
            record_failure(store, FAILING_URL, "timeout", "no answer", NOW, NOW + timedelta(hours=2))
    return path


def test_feeds_table_shows_each_feeds_health(config: Path) -> None:
    result = alertd("feeds", "-c", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "STATUS",
        "NAME",
        "LAST",
        "OK",
        "FAILS",
        "LAST",
        "ERROR",
        "NEXT",
        "POLL",
        "URL",
    ]
    rows = {line.split("  ")[0].strip(): line for line in lines[1:5]}
    assert set(rows) == {"ok", "gone", "failing", "new"}
    assert "never (gone)" in rows["gone"]
    assert "timeout" in rows["failing"] and " 3 " in rows["failing"]
    assert (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M") in rows["failing"]
    assert f"GONE: Old feed ({GONE_URL}) answered 410 Gone" in result.stdout


def test_feeds_json_carries_every_health_field(config: Path) -> None:
    result = alertd("feeds", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    feeds = {row["url"]: row for row in json.loads(result.stdout)}
    assert feeds[OK_URL]["status"] == "ok"
    assert feeds[OK_URL]["tags"] == ["fr"]
    assert datetime.fromisoformat(feeds[OK_URL]["last_success_at"]) == NOW
    assert (feeds[GONE_URL]["status"], feeds[GONE_URL]["gone"], feeds[GONE_URL]["next_poll_at"]) == (
        "gone",
        True,
        None,
    )
    failing = feeds[FAILING_URL]
    assert (failing["status"], failing["last_error_class"], failing["consecutive_failures"]) == (
        "failing",
        "timeout",
        3,
    )
    assert feeds["https://new.example.org/rss"]["status"] == "new"


def test_import_appends_to_the_feeds_file_and_export_lists_everything(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "list.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="1.0"><body><outline text="Business & Economy">'
        f'<outline text="BFM" xmlUrl="{OK_URL}"/>'
        '<outline text="CNBC" xmlUrl="https://search.cnbc.com/rs/search/view.xml?partnerId=wrss01&id=10001147"/>'
        "</outline></body></opml>",
        encoding="utf-8",
    )
    imported = alertd("feeds", "import", str(opml), "-c", str(config))
    assert imported.returncode == 0, imported.stderr
    assert f"skipped (already configured): {OK_URL}" in imported.stdout
    assert "imported 1 feeds" in imported.stdout
    assert "Business & Economy" in (tmp_path / "feeds.toml").read_text(encoding="utf-8")

    exported = alertd("feeds", "export", "-c", str(config))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.count("<outline ") == 5
    assert "partnerId=wrss01&amp;id=10001147" in exported.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>BFM</title></channel></rss>',
            "not an OPML document: its root element is <rss> — a feed itself, not a list of feeds",
        ),
        ("this is not a feed list at all & never was <", "not an OPML document: no <opml> element"),
        ('<opml version="2.0"><head/><body><outline text="folder"/></body></opml>', "no feed in it"),
    ],
    ids=["an RSS feed", "garbage", "an OPML without feeds"],
)
def test_import_refuses_what_is_not_a_list_of_feeds(
    config: Path, tmp_path: Path, content: str, says: str
) -> None:
    given = tmp_path / "given.opml"
    given.write_text(content, encoding="utf-8")
    feeds_file = tmp_path / "feeds.toml"
    before = feeds_file.read_bytes() if feeds_file.exists() else None

    result = alertd("feeds", "import", str(given), "-c", str(config))

    assert result.returncode == 1
    assert says in result.stderr and "nothing to import" not in result.stdout
    assert (feeds_file.read_bytes() if feeds_file.exists() else None) == before
