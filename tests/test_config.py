"""Config validation: every kind of mistake is reported as PATH:LINE:COL: key.path: message, all at once."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from alertd.config import OPTIONS, load_config
from alertd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertd.toml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


MINIMAL = """
[[feed]]
url = "http://127.0.0.1:8000/feed.xml"

[[subscriber]]
email = "me@example.org"
schedule = "daily 07:00"
"""


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.watchlist == tmp_path / "watchlist.toml"
    assert config.state_path == tmp_path / "var/alertd.sqlite3"
    assert config.poll.interval == timedelta(minutes=15)
    assert config.poll.first_poll == "seed"
    assert config.delivery.method == "maildir"
    assert config.delivery.maildir == tmp_path / "var/mail"
    assert config.feeds[0].name == "http://127.0.0.1:8000/feed.xml"
    assert config.subscribers[0].topics is None
    assert config.subscribers[0].schedule.kind == "daily"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            [poll]
            intervall = "15m"
            """,
            "alertd.toml:2:1: poll.intervall: unknown key 'intervall' (did you mean 'interval'?)",
            id="unknown-key",
        ),
        pytest.param(
            """
            [poll]
            concurrency = "many"
            """,
            "alertd.toml:2:1: poll.concurrency: expected an integer, got a string",
            id="wrong-type",
        ),
        pytest.param(
            """
            [[feed]]
            name = "no url"
            """,
            "alertd.toml:1:3: feed[0]: missing required key 'url'",
            id="missing-required",
        ),
        pytest.param(
            """
            [poll]
              interval = "15 minutes"
            """,
            "alertd.toml:2:3: poll.interval: invalid duration '15 minutes': expected a number and a unit "
            "(s, m, h, d, w), e.g. '15m'",
            id="bad-duration",
        ),
        pytest.param(
            """
            [[subscriber]]
            email = "me@example.org"
            schedule = "daily 7h"
            """,
            "alertd.toml:3:1: subscriber[0].schedule: invalid schedule 'daily 7h': time '7h' is not HH:MM "
            "(00:00 to 23:59)",
            id="bad-schedule",
        ),
        pytest.param(
            """
            [[subscriber]]
            email = "me@example.org"
            schedule = "61 * * * *"
            """,
            "alertd.toml:3:1: subscriber[0].schedule: invalid cron expression '61 * * * *'",
            id="bad-cron",
        ),
        pytest.param(
            """
            [delivery.smtp]
            password = "hunter2"
            """,
            "alertd.toml:2:1: delivery.smtp.password: never put the password in the config",
            id="password-in-toml",
        ),
        pytest.param(
            """
            [delivery]
            method = "pigeon"
            """,
            "alertd.toml:2:1: delivery.method: must be one of 'maildir', 'mbox', 'smtp', got 'pigeon'",
            id="bad-choice",
        ),
        pytest.param(
            """
            [poll]
            interval = "15m"
            = broken
            """,
            "alertd.toml:3:1: invalid TOML: Invalid statement",
            id="toml-syntax",
        ),
    ],
)
def test_each_mistake_is_located(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert len(found) == 1, found
    assert found[0].replace(str(tmp_path) + "/", "").startswith(expected)


def test_subscriber_topic_must_exist_in_the_watchlist(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[subscriber]]
        email = "me@example.org"
        schedule = "hourly"
        topics = ["french-exports", "chinese-ecomerce"]
        """,
    )
    found = problems(path, known_topics=frozenset({"french-exports", "chinese-ecommerce"}))
    assert [f.replace(str(tmp_path) + "/", "") for f in found] == [
        "alertd.toml:4:29: subscriber[0].topics[1]: topic 'chinese-ecomerce' is not defined in the watchlist "
        "(did you mean 'chinese-ecommerce'?)"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        colour = "blue"
        [poll]
        interval = "soon"
        [[feed]]
        url = "ftp://example.org/feed"
        [[subscriber]]
        email = "not-an-address"
        schedule = "weekly funday 07:00"
        """,
    )
    found = [f.replace(str(tmp_path) + "/", "") for f in problems(path)]
    assert [f.split(" ", 2)[:2] for f in found] == [
        ["alertd.toml:1:1:", "colour:"],
        ["alertd.toml:3:1:", "poll.interval:"],
        ["alertd.toml:5:1:", "feed[0].url:"],
        ["alertd.toml:7:1:", "subscriber[0].email:"],
        ["alertd.toml:8:1:", "subscriber[0].schedule:"],
    ]


def test_duplicate_feed_urls_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[feed]]
        url = "https://example.org/a.xml"
        [[feed]]
        url = "https://example.org/a.xml"
        """,
    )
    assert [f.replace(str(tmp_path) + "/", "") for f in problems(path)] == [
        "alertd.toml:4:1: feed[1].url: duplicate feed URL (first at feed[0])"
    ]


def test_plain_smtp_with_credentials_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [delivery]
        method = "smtp"
        [delivery.smtp]
        host = "mail.example.org"
        security = "none"
        username = "me"
        """,
    )
    found = problems(path)
    assert len(found) == 1
    assert "delivery.smtp.security: security = 'none' would send the password in clear" in found[0]


def test_shipped_example_config_is_valid_and_documents_every_option() -> None:
    path = REPO / "config" / "alertd.toml"
    config = load_config(path, known_topics=frozenset({"chinese-ecommerce", "french-exports"}))
    assert len(config.feeds) >= 13
    assert any("bfmtv.com" in feed.url for feed in config.feeds)
    text = path.read_text(encoding="utf-8")
    for section, options in OPTIONS.items():
        for key in options:
            assert f"{key} =" in text, f"config/alertd.toml does not document {section or 'top-level'}.{key}"
