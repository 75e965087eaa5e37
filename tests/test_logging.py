"""Logs: one line per event on stdout, journald-friendly, JSON on request, and never a secret."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd
from tests.smtpserver import SmtpServer

PASSWORD = "correct-horse-battery-staple-9431"


def config_with_smtp(tmp_path: Path, feed_url: str, port: int) -> Path:
    (tmp_path / "watchlist.toml").write_text(
        '[[topic]]\nid = "t"\nname = "T"\nany = ["Shein"]\n', encoding="utf-8"
    )
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "alert"
            [[feed]]
            url = "{feed_url}"
            [delivery]
            method = "smtp"
            [delivery.smtp]
            host = "127.0.0.1"
            port = {port}
            security = "none"
            username = "alertd"
            [[subscriber]]
            email = "reader@example.org"
            schedule = "immediate"
            """
        ),
        encoding="utf-8",
    )
    return config


def run(config: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return alertd("run", "--once", "-c", str(config), "--log-level", "debug", *extra, env=env)


def test_the_smtp_password_never_appears_in_logs_even_when_auth_fails(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    feed_server.route(
        "/f.xml", make_rss([{"title": "Shein ouvre un magasin", "link": "https://example.org/s"}])
    )
    config = config_with_smtp(tmp_path, feed_server.url("/f.xml"), smtp_server.port)
    for log_format in ("text", "json"):
        shutil.rmtree(tmp_path / "var", ignore_errors=True)
        smtp_server.handler.queue("AUTH", "535 5.7.8 Authentication credentials invalid")
        result = run(config, "--log-format", log_format, env={"ALERTD_SMTP_PASSWORD": PASSWORD})
        output = result.stdout + result.stderr
        assert "535" in output or "uthentication" in output, output
        assert PASSWORD not in output
        assert PASSWORD.encode().hex() not in output


def test_logs_have_timestamps_unless_journald_is_listening(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/f.xml", make_rss([]))
    (tmp_path / "watchlist.toml").write_text(
        '[[topic]]\nid = "t"\nname = "T"\nany = ["Shein"]\n', encoding="utf-8"
    )
    config = tmp_path / "alertd.toml"
    config.write_text(f'[[feed]]\nurl = "{feed_server.url("/f.xml")}"\n', encoding="utf-8")
    plain = run(config, env={})
    shutil.rmtree(tmp_path / "var")
    journal = run(config, env={"JOURNAL_STREAM": "8:12345"})
    stamped = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR) ")
    assert plain.stdout.splitlines() and all(stamped.match(line) for line in plain.stdout.splitlines())
    assert journal.stdout.splitlines() and all(
        line.startswith(("INFO ", "DEBUG ", "WARNING ")) for line in journal.stdout.splitlines()
    )


def test_json_logs_are_one_object_per_line(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/f.xml", make_rss([{"title": "Shein", "link": "https://example.org/s"}]))
    (tmp_path / "watchlist.toml").write_text(
        '[[topic]]\nid = "t"\nname = "T"\nany = ["Shein"]\n', encoding="utf-8"
    )
    config = tmp_path / "alertd.toml"
    config.write_text(f'[[feed]]\nurl = "{feed_server.url("/f.xml")}"\n', encoding="utf-8")
    result = run(config, "--log-format", "json", env={})
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("first poll" in r["message"] for r in records)
