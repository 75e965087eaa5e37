"""Exactly once, whatever happens around the daemon (RELIABILITY rows 37-45), with real processes on loopback.

Each test reproduces an attack that once broke the promise without any crash: a second alertd beside the
daemon, ``alertd flush`` while the daemon delivers, a state that cannot be written, a stop while the server is
slow to answer the final dot, wall-clock steps, a file saved halfway.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd, environment, spawn_daemon, wait_for
from tests.smtpserver import SmtpServer

WATCHLIST = '[[topic]]\nid = "chinese-ecommerce"\nname = "E-commerce chinois"\nany = ["Alibaba", "Temu"]\n'


def story(n: int, *, minutes_ago: int = 5) -> dict[str, Any]:
    return {
        "title": f"Alibaba annonce la nouvelle {n}",
        "link": f"https://news.test/alibaba-{n}",
        "pub_date": datetime.now(UTC) - timedelta(minutes=minutes_ago),
    }


def write_config(
    tmp_path: Path,
    feed_url: str,
    *,
    subscribers: int = 1,
    schedule: str = "immediate",
    smtp_port: int | None = None,
    smtp_timeout: str = "20s",
    interval: str = "1m",
    extra: str = "",
) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    people = "".join(
        f'[[subscriber]]\nemail = "reader{i}@example.org"\nschedule = "{schedule}"\ntimezone = "UTC"\n'
        for i in range(subscribers)
    )
    delivery = ""
    if smtp_port is not None:
        delivery = (
            f'[delivery]\nmethod = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
            f'security = "none"\ntimeout = "{smtp_timeout}"\n'
        )
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "alert"
            interval = "{interval}"
            min_interval = "1m"
            [[feed]]
            name = "BFM"
            url = "{feed_url}"
            """
        )
        + people
        + delivery
        + extra,
        encoding="utf-8",
    )
    return config


def delay_final_dot(server: SmtpServer, seconds: float) -> threading.Event:
    """Make the server take ``seconds`` to answer the final dot; the event is set when it has the message."""
    original, entered = server.handler.handle_DATA, threading.Event()

    async def slow(smtp: Any, session: Any, envelope: Any) -> str:
        entered.set()
        await asyncio.sleep(seconds)
        return await original(smtp, session, envelope)

    server.handler.handle_DATA = slow  # type: ignore[method-assign]
    return entered


def per_message_id(server: SmtpServer) -> Counter[str]:
    counts: Counter[str] = Counter()
    for envelope in server.messages:
        counts[
            str(email.message_from_bytes(envelope.content, policy=email.policy.default)["Message-ID"])
        ] += 1
    return counts


def outbox_rows(tmp_path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(f"file:{tmp_path / 'var/alertd.sqlite3'}?mode=ro", uri=True)
    try:
        return [(str(r[0]), int(r[1])) for r in db.execute("SELECT status, attempts FROM outbox ORDER BY id")]
    finally:
        db.close()


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, and the exit status; a process that does not stop in time is killed (and reaped)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    finally:
        process.kill()
        process.wait(timeout=30)


def status_of(config: Path) -> dict[str, Any]:
    result = alertd("status", "--json", "-c", str(config))
    return dict(json.loads(result.stdout)) if result.stdout.startswith("{") else {}


# --- one daemon per state (row 37) --------------------------------------------------------------------------


def test_a_second_alertd_on_the_same_state_exits_at_once_naming_the_first(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    daemon = spawn_daemon(config, tmp_path / "daemon.log")
    try:
        assert wait_for(lambda: 1 == feed_server.hits("/feed.xml")), "the daemon's first poll"
        for command in (("run",), ("run", "--once")):
            second = alertd(*command, "-c", str(config), timeout=30)
            assert 1 == second.returncode, second.stdout + second.stderr
            assert f"another alertd (pid {daemon.pid}, daemon) is running" in second.stderr
        assert {"running": True, "pid": daemon.pid} == {k: status_of(config)[k] for k in ("running", "pid")}
        assert 1 == feed_server.hits("/feed.xml"), "the refused ones polled nothing"

        daemon.kill()  # no chance to say it stopped: the lock alone tells
        daemon.wait(timeout=30)
        assert {"running": False, "pid": None} == {k: status_of(config)[k] for k in ("running", "pid")}
        assert 0 == alertd("run", "--once", "-c", str(config), timeout=60).returncode
    finally:
        daemon.kill()
        daemon.wait(timeout=30)


def test_status_names_a_run_once_that_holds_the_state(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    gate = feed_server.hold("/feed.xml")
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    with subprocess.Popen(
        [sys.executable, "-m", "alertd", "run", "--once", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(),
    ) as once:
        try:
            assert wait_for(lambda: 1 == feed_server.hits("/feed.xml")), "run --once is polling"
            status = status_of(config)
            assert {"running": False, "busy": f"run --once (pid {once.pid})"} == {
                k: status[k] for k in ("running", "busy")
            }
            text = alertd("status", "-c", str(config)).stdout
            assert f"but `alertd run --once (pid {once.pid})` is using the state now" in text
        finally:
            gate.set()
        assert 0 == once.wait(timeout=60)
    assert None is status_of(config)["busy"]


# --- flush beside the daemon (row 38) ------------------------------------------------------------------------


def test_flush_beside_a_delivering_daemon_sends_each_message_once(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    started = delay_final_dot(smtp_server, 2)  # the daemon is mid-delivery while flush runs
    feed_server.route("/feed.xml", make_rss([story(1), story(2)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"), subscribers=4, smtp_port=smtp_server.port)
    daemon = spawn_daemon(config, tmp_path / "daemon.log")
    try:
        assert started.wait(30), (tmp_path / "daemon.log").read_text()
        flushed = alertd("flush", "-c", str(config), timeout=120)
        assert flushed.returncode in (0, 1), flushed.stderr
        assert wait_for(lambda: len(smtp_server.messages) >= 4, timeout=60), (
            tmp_path / "daemon.log"
        ).read_text()
        assert wait_for(lambda: all(status == "sent" for status, _ in outbox_rows(tmp_path)), timeout=60)
    finally:
        assert 0 == stop(daemon)
    counts = per_message_id(smtp_server)
    assert 4 == len(counts)
    assert {1} == set(counts.values()), counts


def test_a_claim_left_by_a_killed_process_is_taken_over_with_the_same_message_id(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"), smtp_port=smtp_server.port)
    crashed = alertd("run", "--once", "-c", str(config), env={"ALERTD_FAILPOINT": "before_delivery"})
    assert -9 == crashed.returncode
    assert [("sending", 0)] == outbox_rows(tmp_path), "the message was claimed, then its claimant died"

    flushed = alertd("flush", "-c", str(config), timeout=60)
    assert 0 == flushed.returncode, flushed.stdout + flushed.stderr
    assert [("sent", 1)] == outbox_rows(tmp_path)
    assert [1] == list(per_message_id(smtp_server).values())


# --- a state that cannot be written (row 39) -------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_after_a_send_repeats_nothing_and_delivery_resumes_by_itself(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    """The server accepts the message; at that instant the state becomes unwritable (the fail point that
    simulates SQLITE_FULL). The daemon must not send it again at its next drains, say why, and record the
    delivery once writing works again."""
    full = tmp_path / "state-is-full"
    original = smtp_server.handler.handle_DATA

    async def fill_the_disk(server: Any, session: Any, envelope: Any) -> str:
        full.touch()
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = fill_the_disk  # type: ignore[method-assign]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(
        tmp_path,
        feed_server.url("/feed.xml"),
        smtp_port=smtp_server.port,
        extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
    )
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(
        config, log, env={"ALERTD_FAILPOINT": "state_full", "ALERTD_STATE_FULL_FLAG": str(full)}
    )

    def metric(name: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return ""
        return next((line for line in text.splitlines() if line.startswith(name)), "")

    try:
        assert wait_for(lambda: "the state cannot be written" in log.read_text(), timeout=60), log.read_text()
        assert "alertd_state_writable 0.0" == metric("alertd_state_writable")
        time.sleep(12)  # the daemon tries twice to record the delivery, in vain, and sends nothing
        assert 1 == len(smtp_server.messages), "a message was sent again because its sending was not recorded"
        full.unlink()
        assert wait_for(lambda: "the state can be written again" in log.read_text(), timeout=30), (
            log.read_text()
        )
        assert wait_for(lambda: [("sent", 1)] == outbox_rows(tmp_path), timeout=30)
        assert "alertd_state_writable 1.0" == metric("alertd_state_writable")
    finally:
        assert 0 == stop(daemon)
    assert 1 == len(smtp_server.messages)


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 16 MiB tmpfs (as root; skipped elsewhere, where the state_full fail point stands in for it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_really_full_disk_after_a_send_repeats_nothing_and_delivery_resumes_once_space_is_back(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer, small_disk: Path
) -> None:
    """The same, with the state on a small tmpfs that a file fills at the instant the server accepts."""
    filler = small_disk / "filler"
    original = smtp_server.handler.handle_DATA

    async def fill_the_disk(server: Any, session: Any, envelope: Any) -> str:
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = fill_the_disk  # type: ignore[method-assign]
    feed_server.route("/feed.xml", make_rss([story(1)]))
    state = small_disk / "alertd.sqlite3"
    config = write_config(tmp_path, feed_server.url("/feed.xml"), smtp_port=smtp_server.port)
    config.write_text(f'[state]\npath = "{state}"\n' + config.read_text(), encoding="utf-8")
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: "the state cannot be written" in log.read_text(), timeout=60), log.read_text()
        assert "the disk is full" in log.read_text()
        time.sleep(12)  # two attempts to record it, in vain
        assert 1 == len(smtp_server.messages)
        filler.unlink()
        assert wait_for(lambda: "the state can be written again" in log.read_text(), timeout=30), (
            log.read_text()
        )
    finally:
        assert 0 == stop(daemon)
    db = sqlite3.connect(state)
    try:
        assert [("sent", 1)] == db.execute("SELECT status, attempts FROM outbox").fetchall()
        assert ("ok",) == db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    assert 1 == len(smtp_server.messages)


# --- a stop while the server is slow to answer the final dot (row 45) ---------------------------------------


@pytest.mark.slow
def test_sigterm_while_the_server_takes_25s_to_answer_the_final_dot_waits_and_repeats_nothing(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    data = delay_final_dot(smtp_server, 25)  # longer than the 20 s polls get, shorter than the SMTP deadline
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(
        tmp_path, feed_server.url("/feed.xml"), smtp_port=smtp_server.port, smtp_timeout="60s"
    )
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, log)
    try:
        assert data.wait(30), log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert 0 == daemon.wait(timeout=90), log.read_text()
    finally:
        daemon.kill()
        daemon.wait(timeout=30)
    assert [("sent", 1)] == outbox_rows(tmp_path), log.read_text()
    assert "rolled back" not in log.read_text()
    again = alertd("run", "--once", "-c", str(config), timeout=60)
    assert 0 == again.returncode
    assert 1 == len(smtp_server.messages), "the restart sent it again"


# --- wall-clock steps (row 40) ----------------------------------------------------------------------------------


def faketime_env(offset_file: Path) -> dict[str, str]:
    libfaketime = pytest.importorskip("libfaketime")
    vendor = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src"
    if not (vendor / "libfaketime.so.1").exists():
        pytest.skip("libfaketime's library is not built for this platform")
    return {
        "LD_LIBRARY_PATH": str(vendor),
        "LD_PRELOAD": "libfaketime.so.1",
        "DONT_FAKE_MONOTONIC": "1",  # NTP steps the wall clock; the monotonic clock goes on
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
    }


@pytest.mark.slow
def test_wall_clock_steps_forward_and_back_never_stop_polling_and_the_digest_goes_once(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    offset = tmp_path / "faketime"
    offset.write_text("+0\n", encoding="utf-8")
    digest_at = datetime.now(UTC) + timedelta(minutes=5)
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"), schedule=f"daily {digest_at:%H:%M}")
    log = tmp_path / "daemon.log"
    mail = tmp_path / "var/mail/new"
    daemon = spawn_daemon(config, log, env=faketime_env(offset))
    try:
        assert wait_for(lambda: "1 new item," in log.read_text(), timeout=30), log.read_text()
        assert not mail.exists() or not any(mail.iterdir()), "the digest is not due yet"

        hits = feed_server.hits("/feed.xml")
        offset.write_text("+10m\n", encoding="utf-8")  # NTP corrects a clock that was 10 minutes late
        assert wait_for(lambda: "the wall clock stepped forward" in log.read_text(), timeout=10), (
            log.read_text()
        )
        assert wait_for(lambda: feed_server.hits("/feed.xml") > hits, timeout=30), "polling stopped"
        assert wait_for(lambda: mail.is_dir() and 1 == len(list(mail.iterdir())), timeout=30), log.read_text()

        hits = feed_server.hits("/feed.xml")
        offset.write_text("-30d\n", encoding="utf-8")  # a clock that was a month ahead is corrected
        assert wait_for(lambda: "the wall clock stepped back" in log.read_text(), timeout=10), log.read_text()
        assert wait_for(lambda: feed_server.hits("/feed.xml") > hits, timeout=30), "polling waits a month"
        assert 1 == len(list(mail.iterdir())), "the digest went twice"
    finally:
        assert 0 == stop(daemon)


# --- a file saved halfway, hostile files (row 41) ----------------------------------------------------------------


def next_poll_at(tmp_path: Path) -> datetime:
    db = sqlite3.connect(f"file:{tmp_path / 'var/alertd.sqlite3'}?mode=ro", uri=True)
    try:
        return datetime.fromisoformat(db.execute("SELECT next_poll_at FROM feeds").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
def test_a_watchlist_truncated_during_a_poll_is_not_applied_and_the_new_stories_are_delivered(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """The editor truncates the watchlist, the poll of that moment runs, then the editor writes the file: the
    poll must have matched with the last good watchlist."""
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    log, watchlist, mail = tmp_path / "daemon.log", tmp_path / "watchlist.toml", tmp_path / "var/mail/new"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: mail.is_dir() and 1 == len(list(mail.iterdir())), timeout=30), log.read_text()
        feed_server.route("/feed.xml", make_rss([story(1), story(2), story(3)]))
        hits = feed_server.hits("/feed.xml")
        time.sleep(max(0.0, (next_poll_at(tmp_path) - datetime.now(UTC)).total_seconds() - 4))
        watchlist.write_text("", encoding="utf-8")  # the editor truncated it; its new text comes later
        assert wait_for(lambda: "not applied yet" in log.read_text(), timeout=10), log.read_text()
        assert wait_for(lambda: feed_server.hits("/feed.xml") > hits, timeout=30), log.read_text()
        assert wait_for(lambda: "2 new items, 2 matches" in log.read_text(), timeout=10), log.read_text()
        watchlist.write_text(WATCHLIST, encoding="utf-8")  # the editor finishes its save
        assert wait_for(lambda: 2 == len(list(mail.iterdir())), timeout=30), log.read_text()
    finally:
        assert 0 == stop(daemon)
    text = log.read_text()
    assert "0 topics" not in text
    assert 1 == text.count("not applied yet"), "said once, not at every look"
    newest = max(mail.iterdir(), key=lambda path: path.stat().st_mtime_ns).read_text()
    assert "nouvelle 2" in newest and "nouvelle 3" in newest


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("watchlist nested 600 deep", WATCHLIST + "x = " + "[" * 600 + "]" * 600 + "\n"),
        (
            "a query with 200 nested parentheses",
            WATCHLIST.replace(
                'any = ["Alibaba", "Temu"]', "query = '" + "(" * 200 + "Alibaba" + ")" * 200 + "'"
            ),
        ),
        ("not UTF-8", WATCHLIST.replace("chinois", "chinois \udcff")),
    ],
)
def test_a_hostile_watchlist_on_reload_keeps_the_daemon_and_its_configuration(
    tmp_path: Path, feed_server: FeedServer, name: str, text: str
) -> None:
    feed_server.route("/feed.xml", make_rss([]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    log, watchlist = tmp_path / "daemon.log", tmp_path / "watchlist.toml"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: "alertd started" in log.read_text(), timeout=30)
        watchlist.write_bytes(text.encode("utf-8", "surrogateescape"))  # no signal: the watcher sees it
        assert wait_for(lambda: "reload failed, keeping the previous configuration" in log.read_text()), (
            log.read_text()
        )
        assert daemon.poll() is None, f"{name}: the daemon died"
        assert False is status_of(config)["reload_ok"], "alertd status says the reload failed"
        assert "Traceback" not in log.read_text()
        checked = alertd("check-config", "-c", str(config))
        assert 78 == checked.returncode, checked.stdout + checked.stderr
        assert "Traceback" not in checked.stderr
        assert str(watchlist) in checked.stderr
    finally:
        assert 0 == stop(daemon)


# --- the state anywhere (item 11) ------------------------------------------------------------------------------


def test_every_command_works_with_a_state_path_full_of_uri_characters(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(
        tmp_path, feed_server.url("/feed.xml"), extra='[state]\npath = "var/a #b ?c %41 d/alertd.sqlite3"\n'
    )
    # [state] must come before the arrays of tables: move it to the top.
    text = config.read_text(encoding="utf-8")
    state_table = '[state]\npath = "var/a #b ?c %41 d/alertd.sqlite3"\n'
    config.write_text(state_table + text.replace(state_table, ""), encoding="utf-8")
    assert 0 == alertd("run", "--once", "-c", str(config), timeout=60).returncode
    state = tmp_path / "var" / "a #b ?c %41 d" / "alertd.sqlite3"
    assert state.is_file()
    for command in (
        ("status",),
        ("status", "--json"),
        ("outbox",),
        ("feeds",),
        ("feeds", "--json"),
        ("replay", "--since", "1d"),
        ("preview", "--since", "1d", "-o", str(tmp_path / "p.html")),
        ("flush",),
    ):
        result = alertd(*command, "-c", str(config))
        assert 0 == result.returncode, (command, result.stdout, result.stderr)
        assert "no state yet" not in result.stdout, command
    assert "Alibaba" in (tmp_path / "p.html").read_text(encoding="utf-8")
    assert not (tmp_path / "var" / "a ").exists(), "the path was cut at a URI character"
    assert not any(p.name.startswith("a ") and p != state.parent for p in (tmp_path / "var").iterdir())
    shutil.rmtree(tmp_path / "var")


# --- one bad subscriber (row 44) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("rêader@example.org", "SMTPUTF8"),
        ("a,b@example.org", "one address"),
        ("a;b@example.org", "one address"),
    ],
)
def test_an_address_alertd_cannot_send_to_is_a_located_config_error(
    tmp_path: Path, address: str, problem: str
) -> None:
    config = write_config(tmp_path, "https://feeds.test/a.xml")
    config.write_text(config.read_text().replace("reader0@example.org", address), encoding="utf-8")
    checked = alertd("check-config", "-c", str(config))
    assert 78 == checked.returncode
    assert f"{config}:" in checked.stderr and "subscriber[0].email" in checked.stderr
    assert problem in checked.stderr


def test_a_subscriber_whose_mail_cannot_be_built_does_not_keep_the_others_from_theirs(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "templates" / "digest.txt.j2"
    poison = '{% if digest.subscriber_email == "reader1@example.org" %}{{ 1 // 0 }}{% endif %}'
    (templates / "digest.txt.j2").write_text(poison + shipped.read_text(encoding="utf-8"), encoding="utf-8")
    feed_server.route("/feed.xml", make_rss([story(1)]))
    config = write_config(tmp_path, feed_server.url("/feed.xml"), subscribers=3)
    config.write_text(f'templates_dir = "templates"\n{config.read_text()}', encoding="utf-8")
    result = alertd("run", "--once", "-c", str(config), timeout=60)
    assert "mail for reader1@example.org could not be built" in result.stdout + result.stderr
    delivered = [p.read_text() for p in (tmp_path / "var/mail/new").iterdir()]
    assert 2 == len(delivered)
    assert {"reader0@example.org", "reader2@example.org"} == {
        next(a for a in ("reader0@example.org", "reader2@example.org") if a in text) for text in delivered
    }


# --- the flood guard keeps fresh news (item 13) --------------------------------------------------------------


def test_a_small_feed_posting_six_fresh_stories_at_once_alerts_all_six(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """The feed's last news came an hour ago, a byte-identical poll a minute ago; now it posts six stories
    published three minutes ago: a flood by count (6 of 10), news by date. All six alert."""
    old = [dict(story(n, minutes_ago=600), title=f"Sans rapport {n}") for n in range(10, 14)]
    feed_server.route("/feed.xml", make_rss(old))
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    offset = tmp_path / "faketime"
    for ago in ("-1h", "-1m"):  # the seeding an hour ago, the unchanged poll a minute ago
        offset.write_text(f"{ago}\n", encoding="utf-8")
        assert (
            0 == alertd("run", "--once", "-c", str(config), env=faketime_env(offset), timeout=60).returncode
        )
    feed_server.route("/feed.xml", make_rss([story(n, minutes_ago=3) for n in range(6)] + old))
    result = alertd("run", "--once", "-c", str(config), timeout=60)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "flood guard" in result.stdout, "six of ten is a flood by count"
    (digest,) = [p.read_text() for p in (tmp_path / "var/mail/new").iterdir()]
    assert {f"nouvelle {n}" for n in range(6)} == {
        f"nouvelle {n}" for n in range(6) if f"nouvelle {n}" in digest
    }


def test_the_unit_gives_a_delivery_in_flight_its_whole_smtp_deadline() -> None:
    from alertd.config import DeliveryConfig
    from alertd.outbox import stop_wait
    from alertd.service import STOP_TIMEOUT

    longest = max(STOP_TIMEOUT, stop_wait(DeliveryConfig(method="smtp")).total_seconds()) + 5
    for unit in ("alertd.service", "alertd-user.service"):
        text = (Path(__file__).resolve().parents[1] / "systemd" / unit).read_text(encoding="utf-8")
        timeout = next(
            int(line.split("=", 1)[1]) for line in text.splitlines() if line.startswith("TimeoutStopSec=")
        )
        assert timeout > longest, unit


# --- big and poisoned items (rows 42, 43) ------------------------------------------------------------------------


def big_feed(n: int) -> bytes:
    """Two good stories and one with a 9 MB summary (under the 10 MiB body cap)."""
    huge = {
        "title": f"Dossier {n}",
        "link": f"https://news.test/huge-{n}",
        "description": "Alibaba " * 1_150_000,
    }
    return make_rss([story(10 * n + 1), huge, story(10 * n + 2)])


@pytest.mark.slow
def test_several_feeds_with_a_9_mb_summary_polled_at_once_keep_the_loop_responsive_and_memory_bounded(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = 4
    for n in range(feeds):
        feed_server.route(f"/big{n}.xml", big_feed(n))
    config = write_config(tmp_path, feed_server.url("/big0.xml"))
    extra = "".join(
        f'[[feed]]\nname = "Big {n}"\nurl = "{feed_server.url(f"/big{n}.xml")}"\n' for n in range(1, feeds)
    )
    config.write_text(config.read_text() + extra, encoding="utf-8")
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, log)
    try:
        assert wait_for(lambda: log.read_text().count("new items") == feeds, timeout=120), log.read_text()
        status = Path(f"/proc/{daemon.pid}/status").read_text(encoding="ascii")
        peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) * 1024
        mail = tmp_path / "var/mail/new"
        assert wait_for(lambda: mail.is_dir() and len(list(mail.iterdir())) >= 1, timeout=30)
    finally:
        assert 0 == stop(daemon)
    text = log.read_text()
    assert "event loop was blocked" not in text, text
    assert peak < 256 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"
    delivered = "".join(p.read_text() for p in mail.iterdir())
    for n in range(feeds):
        assert f"nouvelle {10 * n + 1}" in delivered and f"nouvelle {10 * n + 2}" in delivered


@pytest.mark.parametrize("reference", ["&#xD800;", "&#x110000;", "&#99999999999;"])
def test_one_item_with_a_reference_outside_unicode_keeps_the_rest_of_its_feed(
    tmp_path: Path, feed_server: FeedServer, reference: str
) -> None:
    body = make_rss([story(1), story(2), story(3)]).replace(b"nouvelle 2", f"nouvelle 2 {reference}".encode())
    feed_server.route("/feed.xml", body)
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    result = alertd("run", "--once", "-c", str(config), timeout=60)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "invalid character references cleaned" in result.stdout
    (digest,) = [p.read_text() for p in (tmp_path / "var/mail/new").iterdir()]
    assert "nouvelle 1" in digest and "nouvelle 3" in digest
