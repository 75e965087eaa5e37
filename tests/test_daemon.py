"""``alertd run`` as a real process: it polls, delivers, reloads on SIGHUP and stops cleanly on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd, spawn_daemon, wait_for
from tests.smtpserver import SmtpServer

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu"]
"""


def start_daemon(tmp_path: Path, feed_url: str) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "alert"
            interval = "1h"
            [[feed]]
            name = "BFM"
            url = "{feed_url}"
            [[subscriber]]
            email = "reader@example.org"
            schedule = "immediate"
            """
        ),
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    return spawn_daemon(config, log), log


def start_on_one_story(tmp_path: Path, feed_server: FeedServer) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """The daemon on a feed holding one matching story: its process, its log, its config."""
    feed_server.route(
        "/feed.xml", make_rss([{"title": "Alibaba ouvre un bureau", "link": "https://example.org/a"}])
    )
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    return process, log, tmp_path / "alertd.toml"


def test_daemon_delivers_then_stops_cleanly_on_sigterm(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route(
        "/feed.xml", make_rss([{"title": "Alibaba ouvre un bureau à Paris", "link": "https://example.org/a"}])
    )
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    try:
        maildir = tmp_path / "var/mail/new"
        assert wait_for(lambda: maildir.is_dir() and any(maildir.iterdir())), log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        process.kill()
    output = log.read_text()
    assert "received SIGTERM" in output
    assert "alertd stopped" in output
    assert len(list(maildir.iterdir())) == 1


def test_sighup_keeps_the_last_good_watchlist_until_a_valid_one_arrives(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    try:
        assert wait_for(lambda: "alertd started" in log.read_text()), log.read_text()
        (tmp_path / "watchlist.toml").write_text(
            '[[topic]]\nid = "x"\nname = "X"\nany = [\n', encoding="utf-8"
        )
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed, keeping the previous configuration" in log.read_text()), (
            log.read_text()
        )
        assert f"{tmp_path / 'watchlist.toml'}:" in log.read_text()
        assert process.poll() is None, "an invalid reload must not stop the daemon"

        (tmp_path / "watchlist.toml").write_text(
            WATCHLIST.replace('"Temu"]', '"Temu", "Shein"]'), encoding="utf-8"
        )
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in log.read_text()), log.read_text()
        assert "reload: topic modified: chinese-ecommerce" in log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_metrics_are_served_when_configured(tmp_path: Path, feed_server: FeedServer) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feed_server.route(
        "/feed.xml", make_rss([{"title": "Temu lève des fonds", "link": "https://example.org/t"}])
    )
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    config = tmp_path / "alertd.toml"
    config.write_text(config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8")
    process = spawn_daemon(config, log)
    try:

        def scraped() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return str(response.read().decode())
            except OSError:
                return ""

        assert wait_for(
            lambda: (
                'alertd_polls_total{status="not_modified"}' in scraped()
                or 'alertd_polls_total{status="' in scraped()
            )
        ), log.read_text()
        text = scraped()
        assert "alertd_config_last_reload_successful 1.0" in text
        assert "alertd_poll_duration_seconds_bucket" in text
        (tmp_path / "watchlist.toml").write_text("[[topic]]\nbroken", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "alertd_config_last_reload_successful 0.0" in scraped()), log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_sigterm_mid_delivery_finishes_the_delivery_then_exits_0(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    import asyncio
    import sqlite3

    original = smtp_server.handler.handle_DATA

    async def slow_data(server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(3)
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = slow_data  # type: ignore[method-assign]
    feed_server.route(
        "/feed.xml", make_rss([{"title": "Alibaba recrute en France", "link": "https://example.org/a"}])
    )
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    config = tmp_path / "alertd.toml"
    config.write_text(
        config.read_text()
        + f'\n[delivery]\nmethod = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n',
        encoding="utf-8",
    )
    shutil.rmtree(tmp_path / "var", ignore_errors=True)
    process = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: smtp_server.saw("DATA")), log.read_text()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - started < 20
    finally:
        process.kill()
    assert len(smtp_server.messages) == 1, log.read_text()
    db = sqlite3.connect(tmp_path / "var/alertd.sqlite3")
    assert db.execute("SELECT status FROM outbox").fetchall() == [("sent",)]
    db.close()


def test_a_watchlist_edit_on_disk_is_picked_up_without_a_signal(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    try:
        assert wait_for(lambda: "alertd started" in log.read_text()), log.read_text()
        watchlist = tmp_path / "watchlist.toml"
        watchlist.write_text(
            WATCHLIST + '\n[[topic]]\nid = "exports"\nname = "Exportations"\nany = ["cognac"]\n',
            encoding="utf-8",
        )
        assert wait_for(lambda: "reload: topic added: exports" in log.read_text()), log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_status_reports_a_running_then_stopped_daemon(tmp_path: Path, feed_server: FeedServer) -> None:
    import json

    feed_server.route("/feed.xml", make_rss([]))
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    config = tmp_path / "alertd.toml"

    def status() -> dict[str, Any]:
        result = alertd("status", "--json", "-c", str(config))
        return dict(json.loads(result.stdout)) if result.stdout.startswith("{") else {}

    try:
        assert wait_for(lambda: status().get("running") is True), log.read_text()
        running = status()
        assert process.pid == running["pid"]
        assert running["feeds_total"] == 1
        assert running["outbox"] == {"pending": 0, "retrying": 0, "failed": 0}
        assert running["subscribers"][0]["email"] == "reader@example.org"
        (tmp_path / "watchlist.toml").write_text("[[topic]]\nid = 3\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: status().get("reload_ok") is False), log.read_text()
        assert "watchlist.toml:2:" in status()["reload_error"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    stopped = status()
    assert stopped["running"] is False and stopped["pid"] is None
    text = alertd("status", "-c", str(config)).stdout
    assert "daemon:      not running" in text
    assert "LAST RELOAD FAILED" in text


def test_a_reload_that_lowers_the_interval_reschedules_the_next_poll_at_once(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    import json
    from datetime import datetime, timedelta

    process, log, config = start_on_one_story(tmp_path, feed_server)

    def next_poll() -> datetime | None:
        rows = json.loads(alertd("feeds", "--json", "-c", str(config)).stdout or "[]")
        return datetime.fromisoformat(rows[0]["next_poll_at"]) if rows and rows[0]["next_poll_at"] else None

    try:
        assert wait_for(lambda: "1 new item" in log.read_text()), log.read_text()
        assert wait_for(lambda: next_poll() is not None), log.read_text()
        first = next_poll()
        polled = datetime.fromisoformat(
            json.loads(alertd("feeds", "--json", "-c", str(config)).stdout)[0]["last_success_at"]
        )
        assert first is not None and first - polled > timedelta(minutes=50)  # 1 h, ±10 % jitter

        config.write_text(config.read_text().replace('interval = "1h"', 'interval = "15m"'), encoding="utf-8")
        process.send_signal(signal.SIGHUP)

        assert wait_for(lambda: "is now polled next at" in log.read_text()), log.read_text()
        second = next_poll()
        assert second is not None and timedelta(minutes=13) <= second - polled <= timedelta(minutes=17)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_status_tells_the_truth_about_mail_reloads_and_a_config_broken_under_a_running_daemon(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    process, log, config = start_on_one_story(tmp_path, feed_server)
    try:
        maildir = tmp_path / "var/mail/new"
        assert wait_for(lambda: maildir.is_dir() and any(maildir.iterdir())), log.read_text()
        healthy = alertd("status", "-c", str(config))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "config:      loaded OK at 20" in healthy.stdout
        line = next(li for li in healthy.stdout.splitlines() if li.startswith("subscriber:"))
        assert "(immediate, " in line and ": last mail 20" in line and "next on the next match" in line
        assert "attention" not in healthy.stdout

        config.write_text(config.read_text() + "\n[poll\n", encoding="utf-8")  # saved broken
        broken = alertd("status", "-c", str(config))
        assert broken.returncode == 78
        assert "alertd.toml:" in broken.stderr  # the error, positioned
        assert f"running (daemon, pid {process.pid}," in broken.stdout
        assert "the file on disk no longer loads" in broken.stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
    stopped = alertd("status", "-c", str(config))
    assert stopped.returncode == 78 and "daemon:      not running (last started 20" in stopped.stdout


def test_status_before_any_daemon_says_so_and_a_failed_reload_exits_1(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    process, log = start_daemon(tmp_path, feed_server.url("/feed.xml"))
    config = tmp_path / "alertd.toml"
    try:
        assert wait_for(lambda: "alertd started" in log.read_text()), log.read_text()
        (tmp_path / "watchlist.toml").write_text("[[topic]]\nid = 3\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in log.read_text()), log.read_text()
        failed = alertd("status", "-c", str(config))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert failed.returncode == 1
    assert "attention:   the last reload failed" in failed.stdout

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    (fresh / "alertd.toml").write_text(
        f'[poll]\nfirst_poll = "alert"\n[[feed]]\nname = "BFM"\nurl = "{feed_server.url("/feed.xml")}"\n'
        '[[subscriber]]\nemail = "reader@example.org"\nschedule = "immediate"\n',
        encoding="utf-8",
    )
    once = alertd("run", "--once", "-c", str(fresh / "alertd.toml"))
    assert once.returncode == 0, once.stdout + once.stderr
    after_once = alertd("status", "-c", str(fresh / "alertd.toml"))
    assert after_once.returncode == 0
    assert "config:      OK (not loaded by a daemon yet)" in after_once.stdout
    assert "no mail yet" in after_once.stdout and "last digest" not in after_once.stdout
    assert "daemon:      not running (never started on this state)" in after_once.stdout
