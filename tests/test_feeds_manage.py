"""Feeds from the command line: ``alertd feeds add / remove / pause / resume`` edit the tool-managed feeds file
(keeping its comments and order), and ``alertd feeds poll`` polls now — by asking a running daemon, never as a
second poller beside it, or in its own process when none runs."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

from alertd import feedsfile
from alertd.opml import OpmlFeed
from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd, spawn_daemon, wait_for

WATCHLIST = '[[topic]]\nid = "ecom"\nname = "E-commerce"\nany = ["Alibaba"]\n'
HAND_WRITTEN = """\
# my feeds: BFM first
[[feed]]
name = "BFM"  # the main one
url = "https://bfm.example/rss"

# Les Echos, checked weekly
[[feed]]
name = "Les Echos"
url = "https://echos.example/rss"
interval = "1h"
"""


# --- the file edits, pure ------------------------------------------------------------------------------------


def test_pausing_and_resuming_touch_only_that_feed_and_keep_every_comment() -> None:
    paused = feedsfile.set_paused(HAND_WRITTEN, "https://bfm.example/rss", True)

    assert paused is not None
    assert paused.replace("\npaused = true", "") == HAND_WRITTEN
    assert 'url = "https://bfm.example/rss"\npaused = true\n' in paused
    assert feedsfile.set_paused(paused, "https://bfm.example/rss", False) == HAND_WRITTEN
    assert feedsfile.set_paused(HAND_WRITTEN, "https://nowhere.example/rss", True) is None


def test_removing_keeps_the_other_feeds_in_order_with_their_comments() -> None:
    removed = feedsfile.remove(HAND_WRITTEN, "https://bfm.example/rss")

    assert (
        removed
        == "# my feeds: BFM first\n\n# Les Echos, checked weekly\n" + HAND_WRITTEN.split("weekly\n")[1]
    )
    assert feedsfile.feed_urls(removed) == ["https://echos.example/rss"]


def test_adding_appends_a_table_and_keeps_what_was_there() -> None:
    added = feedsfile.add(
        HAND_WRITTEN, OpmlFeed("https://new.example/rss", "Nouveau", ("chine",)), interval="2h"
    )

    assert added.startswith(HAND_WRITTEN)
    assert added.endswith(
        '[[feed]]\nname = "Nouveau"\nurl = "https://new.example/rss"\ntags = ["chine"]\ninterval = "2h"\n'
    )
    assert feedsfile.feed_urls(added) == [
        "https://bfm.example/rss",
        "https://echos.example/rss",
        "https://new.example/rss",
    ]


# --- the commands --------------------------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            """
            [poll]
            first_poll = "alert"
            interval = "1h"
            [[feed]]
            name = "In the config"
            url = "https://config.example/rss"
            [[subscriber]]
            email = "reader@example.org"
            schedule = "daily 07:00"
            """
        ),
        encoding="utf-8",
    )
    return config


def feeds_json(config: Path) -> dict[str, dict[str, object]]:
    result = alertd("feeds", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_add_check_pause_resume_remove_through_the_command(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route(
        "/rss", make_rss([{"title": "Alibaba à Paris", "link": "https://x.example/a"}], title="BFM Éco")
    )
    config = write_config(tmp_path)
    url = feed_server.url("/rss")

    added = alertd("feeds", "add", url, "--check", "--tags", "fr,eco", "-c", str(config))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "is a feed of 1 items (BFM Éco)" in added.stdout
    assert feeds_json(config)["BFM Éco"]["tags"] == ["fr", "eco"]
    assert alertd("feeds", "add", url, "-c", str(config)).returncode == 1  # already there

    garbage = feed_server.url("/nothing")
    feed_server.route("/nothing", b"<html>not a feed</html>", content_type="text/html")
    refused = alertd("feeds", "add", garbage, "--check", "-c", str(config))
    assert refused.returncode == 1 and "is not a feed" in refused.stderr
    assert "nothing" not in (tmp_path / "feeds.toml").read_text(encoding="utf-8")

    assert alertd("feeds", "pause", "bfm éco", "-c", str(config)).returncode == 0
    assert feeds_json(config)["BFM Éco"]["status"] == "paused"
    hits = feed_server.hits("/rss")
    skipped = alertd("run", "--once", "-c", str(config))
    assert feed_server.hits("/rss") == hits, "a paused feed is not fetched"
    assert "BFM Éco" not in skipped.stderr

    assert alertd("feeds", "resume", url, "-c", str(config)).returncode == 0
    assert feeds_json(config)["BFM Éco"]["paused"] is False
    in_config = alertd("feeds", "remove", "In the config", "-c", str(config))
    assert in_config.returncode == 1 and "edit it there" in in_config.stderr
    unknown = alertd("feeds", "remove", "BFM Eco2", "-c", str(config))
    assert unknown.returncode == 2 and "did you mean 'BFM Éco'" in unknown.stderr
    assert alertd("feeds", "remove", "BFM Éco", "-c", str(config)).returncode == 0
    assert "BFM Éco" not in feeds_json(config)
    assert feedsfile.feed_urls((tmp_path / "feeds.toml").read_text(encoding="utf-8")) == []


def with_a_loopback_feed(tmp_path: Path, feed_server: FeedServer) -> Path:
    """A config whose feeds file holds "Loop", a feed on the loopback server with one matching story."""
    feed_server.route("/rss", make_rss([{"title": "Alibaba à Paris", "link": "https://x.example/a"}]))
    config = write_config(tmp_path)
    added = alertd("feeds", "add", feed_server.url("/rss"), "--name", "Loop", "-c", str(config))
    assert added.returncode == 0, added.stderr
    return config


def test_poll_now_without_a_daemon_polls_here_and_says_what_it_found(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = with_a_loopback_feed(tmp_path, feed_server)

    polled = alertd("feeds", "poll", "Loop", "-c", str(config))

    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert "Loop: ok, 1 new item, 1 match" in polled.stdout
    assert feed_server.hits("/rss") == 1


def test_poll_now_beside_a_running_daemon_asks_it_and_never_polls_twice(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = with_a_loopback_feed(tmp_path, feed_server)
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: "feed Loop: 1 new item" in log.read_text()), log.read_text()
        hits = feed_server.hits("/rss")
        feed_server.route(
            "/rss",
            make_rss(
                [
                    {"title": "Alibaba recrute", "link": "https://x.example/b"},
                    {"title": "Alibaba à Paris", "link": "https://x.example/a"},
                ]
            ),
        )

        polled = alertd("feeds", "poll", "Loop", "-c", str(config))

        assert polled.returncode == 0, polled.stdout + polled.stderr
        assert "Loop: ok, 1 new item, 1 match" in polled.stdout
        assert feed_server.hits("/rss") == hits + 1, "one poll, by the daemon"
        assert "feed Loop: 1 new item, 1 match" in log.read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


def test_a_file_without_feeds_has_no_blocks() -> None:
    assert feedsfile.blocks("# nothing yet\n") == [] and feedsfile.remove("", "https://x.example/rss") is None


def test_status_counts_a_paused_feed_apart(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/rss", make_rss([]))
    config = write_config(tmp_path)
    assert (
        alertd("feeds", "add", feed_server.url("/rss"), "--name", "Loop", "-c", str(config)).returncode == 0
    )
    assert alertd("run", "--once", "-c", str(config)).returncode in (
        0,
        1,
    )  # the config's own feed is unreachable
    assert alertd("feeds", "pause", "Loop", "-c", str(config)).returncode == 0

    status = alertd("status", "-c", str(config)).stdout

    assert "1 paused" in status and "-1 ok" not in status
    explicit = alertd("feeds", "poll", "Loop", "-c", str(config))
    assert (
        explicit.returncode == 0 and "Loop: skipped: feed is paused (alertd feeds resume)" in explicit.stdout
    )


def test_a_feed_added_or_paused_while_the_daemon_runs_is_picked_up_within_seconds(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/rss", make_rss([{"title": "Alibaba à Paris", "link": "https://x.example/a"}]))
    config = write_config(tmp_path)
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: "alertd started" in log.read_text()), log.read_text()
        added = alertd("feeds", "add", feed_server.url("/rss"), "--name", "Loop", "-c", str(config))
        assert added.returncode == 0, added.stderr
        assert wait_for(lambda: "feed Loop: 1 new item, 1 match" in log.read_text(), timeout=30), (
            log.read_text()
        )

        assert alertd("feeds", "pause", "Loop", "-c", str(config)).returncode == 0
        assert wait_for(
            lambda: "configuration reloaded" in log.read_text().split("1 new item")[-1], timeout=30
        )
        hits = feed_server.hits("/rss")
        asked = alertd("feeds", "poll", "Loop", "-c", str(config))
        assert "Loop: skipped: feed is paused" in asked.stdout, asked.stdout + asked.stderr
        assert feed_server.hits("/rss") == hits
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
