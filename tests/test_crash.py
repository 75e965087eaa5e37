"""Crash safety, proven: SIGKILL at every named fail point, and at random instants, loses no match and repeats
at most one message per crash, with the same Message-ID; the database stays intact.
"""

from __future__ import annotations

import email
import email.policy
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from alertd.failpoint import POINTS
from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd, environment

WATCHLIST = '[[topic]]\nid = "cn"\nname = "E-commerce chinois"\nany = ["Alibaba", "Temu", "Shein"]\n'
BRANDS = ("Alibaba", "Temu", "Shein")


def story(n: int) -> dict[str, object]:
    """Every third story matches; the others are noise. Published now: a backlog of fresh news still alerts
    (the flood guard holds back only old items), which is what a few lost polls produce."""
    subject = BRANDS[n % 3] if n % 3 == 0 else f"La PME numéro {n}"
    return {
        "title": f"{subject} annonce la nouvelle {n}",
        "link": f"https://news.example.org/story-{n}",
        "guid": f"id-{n}",
        "pub_date": datetime.now(timezone.utc),
    }


def matching_titles(count: int) -> set[str]:
    return {str(story(n)["title"]) for n in range(count) if n % 3 == 0}


def write_config(tmp_path: Path, feed_url: str, smtp_port: int) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "alert"
            timeout = "10s"
            [[feed]]
            name = "Farm"
            url = "{feed_url}"
            [delivery]
            method = "smtp"
            from = "alertd@example.org"
            [delivery.smtp]
            host = "127.0.0.1"
            port = {smtp_port}
            security = "none"
            timeout = "10s"
            [[subscriber]]
            email = "reader@example.org"
            schedule = "immediate"
            """
        ),
        encoding="utf-8",
    )
    return config


def run_once(config: Path, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    return alertd(
        "run", "--once", "-c", str(config), env={"ALERTD_FAILPOINT": failpoint} if failpoint else None
    )


def delivered(smtp_server) -> tuple[Counter[str], set[str]]:  # type: ignore[no-untyped-def]
    """Deliveries per Message-ID, and every story title that reached the mailbox."""
    per_id: Counter[str] = Counter()
    titles: set[str] = set()
    for envelope in smtp_server.messages:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        per_id[str(message["Message-ID"])] += 1
        text = message.get_body(("plain",))
        assert text is not None
        body = str(text.get_content()).replace("*", "")
        titles.update(title for n in range(200) if (title := str(story(n)["title"])) in body)
    return per_id, titles


def assert_intact(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "var/alertd.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


@pytest.mark.parametrize("point", [p for p in POINTS if p != "stall_loop"])
def test_sigkill_at_each_fail_point_loses_nothing_and_repeats_at_most_once(
    tmp_path: Path,
    feed_server: FeedServer,
    smtp_server,
    point: str,  # type: ignore[no-untyped-def]
) -> None:
    feed_server.route("/feed.xml", make_rss([story(n) for n in range(6)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"), smtp_server.port)

    crashed = run_once(config, failpoint=point)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    recovered = run_once(config)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr

    per_id, titles = delivered(smtp_server)
    assert matching_titles(6) == titles, "a matched story was lost"
    assert sum(per_id.values()) - len(per_id) <= 1, per_id
    assert all(count <= 2 for count in per_id.values())
    if point != "after_delivery_before_mark_sent":
        assert all(count == 1 for count in per_id.values()), f"{point} must not repeat anything: {per_id}"
    assert_intact(tmp_path)

    again = run_once(config)
    assert again.returncode == 0
    assert per_id == delivered(smtp_server)[0], "a clean run after recovery must send nothing more"


@pytest.mark.slow
def test_random_kills_lose_nothing_and_repeat_at_most_once_per_kill(
    tmp_path: Path,
    feed_server: FeedServer,
    smtp_server,  # type: ignore[no-untyped-def]
) -> None:
    rng = random.Random(20261126)
    config = write_config(tmp_path, feed_server.url("/feed.xml"), smtp_server.port)
    kills = 0
    count = 0
    for _ in range(30):
        count += 2
        feed_server.route("/feed.xml", make_rss([story(n) for n in range(count)]))
        process = subprocess.Popen(
            [sys.executable, "-m", "alertd", "run", "--once", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(),
        )
        deadline = time.monotonic() + rng.uniform(0.0, 2.0)
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait(timeout=60)
    final = run_once(config)
    assert final.returncode == 0, final.stdout + final.stderr

    per_id, titles = delivered(smtp_server)
    assert matching_titles(count) == titles, "a matched story was lost"
    assert sum(per_id.values()) - len(per_id) <= kills
    assert all(n <= 2 for n in per_id.values()), per_id
    assert kills >= 5, "the loop must actually kill runs to prove anything"
    assert_intact(tmp_path)
