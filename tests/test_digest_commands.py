"""The digest commands as users type them: preview (read-only), test-email, outbox list / retry, and a
broken template override caught by check-config."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.models import Item, Match, Span
from alertd.store import Store
from tests.smtpserver import SmtpServer
from tests.storage import add_feed, mark_failed, mark_retry, pause_delivery, record_poll, register

FEED = "https://feeds.test/bfm.xml"
NOW = datetime.now(UTC)
WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu"]
"""


def alertd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("ALERTD_CONFIG", "ALERTD_SMTP_PASSWORD")},
        check=False,
    )


def write_config(tmp_path: Path, delivery: str = '[delivery]\nmethod = "maildir"', extra: str = "") -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            {extra}
            [[feed]]
            name = "BFM Économie"
            url = "{FEED}"

            [[subscriber]]
            email = "marie@example.org"
            name = "Marie"
            schedule = "daily 07:00"
            timezone = "Europe/Paris"
            language = "fr"

            [[subscriber]]
            email = "john@example.org"
            schedule = "daily 07:00"
            timezone = "America/New_York"
            language = "en"
            """
        )
        + delivery,
        encoding="utf-8",
    )
    return path


def seed_state(tmp_path: Path, titles: list[str]) -> None:
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        for email_address in ("marie@example.org", "john@example.org"):
            register(store, email_address, NOW - timedelta(days=2))
        add_feed(store, FEED, "BFM Économie")
        items, matches = [], []
        for i, title in enumerate(titles):
            key = f"k{i}"
            items.append(
                Item(
                    key,
                    FEED,
                    "BFM Économie",
                    title,
                    f"{title}, selon nos informations.",
                    "",
                    f"https://bfm.test/{key}",
                    key,
                )
            )
            matches.append((key, Match("chinese-ecommerce", ("alibaba",), (Span("title", 0, 7, "alibaba"),))))
        record_poll(store, FEED, None, None, None, items, [], matches, None, NOW - timedelta(hours=1))


def db_checksum(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    finally:
        connection.close()


# --- preview ---------------------------------------------------------------------------------------------


def test_preview_writes_html_and_eml_without_changing_the_store(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    seed_state(tmp_path, ["Alibaba ouvre un bureau à Paris", "Alibaba recrute"])
    database = tmp_path / "var" / "alertd.sqlite3"
    before = db_checksum(database)

    html = alertd("preview", "-c", str(config), "--output", str(tmp_path / "d.html"))
    eml = alertd(
        "preview", "-c", str(config), "--subscriber", "john@example.org", "-o", str(tmp_path / "d.eml")
    )

    assert 0 == html.returncode, html.stderr
    assert 0 == eml.returncode, eml.stderr
    assert before == db_checksum(database)
    page = (tmp_path / "d.html").read_text(encoding="utf-8")
    assert '<html lang="fr">' in page and "Alibaba ouvre un bureau à Paris" in page and "Pourquoi" in page
    message = email.message_from_bytes((tmp_path / "d.eml").read_bytes(), policy=email.policy.default)
    assert "john@example.org" in str(message["To"])
    assert str(message["Subject"]).startswith("[alertd] 2 stories")
    assert not (tmp_path / "var" / "mail").exists(), "preview must not deliver"


def test_preview_writes_the_text_part_to_standard_output_or_a_txt_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    seed_state(tmp_path, ["Alibaba ouvre un bureau à Paris", "Alibaba recrute"])

    piped = alertd("preview", "-c", str(config), "-o", "-")
    written = alertd("preview", "-c", str(config), "-o", str(tmp_path / "d.txt"))

    assert 0 == piped.returncode == written.returncode, piped.stderr + written.stderr
    assert (
        piped.stdout.startswith("Veille alertd pour ") and "* Alibaba ouvre un bureau à Paris" in piped.stdout
    )
    assert "<html" not in piped.stdout and "wrote" not in piped.stdout
    assert (tmp_path / "d.txt").read_text(encoding="utf-8") == piped.stdout
    assert written.stdout.startswith(f"wrote {tmp_path / 'd.txt'}: [alertd] 2")


def test_preview_since_shows_matches_already_delivered(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    seed_state(tmp_path, ["Alibaba ouvre un bureau à Paris"])
    flushed = alertd("flush", "-c", str(config))
    assert 0 == flushed.returncode, flushed.stdout + flushed.stderr

    pending = alertd("preview", "-c", str(config), "-o", str(tmp_path / "p.html"))
    window = alertd("preview", "-c", str(config), "--since", "1d", "-o", str(tmp_path / "w.html"))

    assert "nothing to preview for marie@example.org" in pending.stdout
    assert not (tmp_path / "p.html").exists()
    assert 0 == window.returncode, window.stderr
    assert "Alibaba ouvre un bureau" in (tmp_path / "w.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "x.pdf"], "must end in .html, .txt or .eml"),
        (["-o", "x.html", "--subscriber", "nobody@example.org"], "no subscriber 'nobody@example.org'"),
        (["-o", "x.html", "--since", "soon"], "--since"),
    ],
)
def test_preview_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    config = write_config(tmp_path)

    result = alertd("preview", "-c", str(config), *args)

    assert 2 == result.returncode
    assert message in result.stderr


# --- test-email ---------------------------------------------------------------------------------------------


def test_test_email_prints_each_smtp_step_and_the_server_replies(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    delivery = f'[delivery]\nmethod = "smtp"\nfrom = "alertd@example.org"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
    config = write_config(tmp_path, delivery)

    result = alertd("test-email", "-c", str(config), "--to", "marie@example.org")

    assert 0 == result.returncode, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "-> EHLO",
        "<- 250",
        "-> MAIL FROM:<alertd@example.org>",
        "-> RCPT TO:<marie@example.org>",
        "-> DATA",
    ):
        assert step in out, out
    assert "<- 250 2.0.0 OK queued as 42" in out
    assert "<- 220" in out  # the greeting
    assert 1 == len(smtp_server.envelopes)
    message = email.message_from_bytes(smtp_server.envelopes[0].content, policy=email.policy.default)
    assert "Alibaba" in str(message["Subject"])


def test_test_email_reports_a_refusal_and_exits_1(tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp_server.handler.queue("MAIL", "550 5.7.1 sender rejected")
    delivery = f'[delivery]\nmethod = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
    config = write_config(tmp_path, delivery)

    result = alertd("test-email", "-c", str(config), "--to", "marie@example.org")

    assert 1 == result.returncode
    assert "<- 550 5.7.1 sender rejected" in result.stdout
    assert "not delivered" in result.stderr


def test_test_email_to_a_maildir_says_where_it_went(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    result = alertd("test-email", "-c", str(config), "--to", "john@example.org")

    assert 0 == result.returncode, result.stderr
    written = list((tmp_path / "var" / "mail" / "new").iterdir())
    assert 1 == len(written)
    assert f"maildir: written to {written[0]}" in result.stdout


# --- outbox --------------------------------------------------------------------------------------------------


def test_outbox_lists_failed_messages_and_retry_requeues_them_and_lifts_a_pause(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        register(store, "marie@example.org", NOW)
        failed = store.enqueue_digest("marie@example.org", "<a@alertd>", b"Subject: a\r\n\r\nx", [], NOW)
        pending = store.enqueue_digest("marie@example.org", "<b@alertd>", b"Subject: b\r\n\r\nx", [], NOW)
        assert failed is not None and pending is not None
        mark_failed(store, failed, "smtp 127.0.0.1:25: 550 5.1.1 no such user", NOW)
        pause_delivery(store, "smtp: authentication failed: 535 5.7.8 bad credentials", "f", NOW)

    listed = alertd("outbox", "-c", str(config))
    retried = alertd("outbox", "retry", str(failed), "-c", str(config))
    again = alertd("outbox", "-c", str(config))
    unknown = alertd("outbox", "retry", "999", "-c", str(config))

    assert 0 == listed.returncode, listed.stderr
    assert "delivery PAUSED" in listed.stdout and "535" in listed.stdout
    failed_line = next(line for line in listed.stdout.splitlines() if line.strip().startswith(str(failed)))
    assert (
        "failed" in failed_line
        and "550 5.1.1 no such user" in failed_line
        and "marie@example.org" in failed_line
    )
    assert 0 == retried.returncode, retried.stderr
    assert f"message {failed} requeued" in retried.stdout and "delivery pause lifted" in retried.stdout
    assert "PAUSED" not in again.stdout and " failed " not in again.stdout
    assert 1 == unknown.returncode and "no pending or failed message 999" in unknown.stderr
    with Store.open(tmp_path / "var" / "alertd.sqlite3", readonly=True) as store:
        assert ["pending", "pending"] == [m.status for m in store.outbox(("pending", "failed"))]
        assert store.delivery_pause() is None


def test_status_shows_a_delivery_pause(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        pause_delivery(store, "smtp: authentication failed: 535 5.7.8 bad credentials", "f", NOW)

    result = alertd("status", "-c", str(config))

    assert 1 == result.returncode, result.stderr  # someone has to act
    assert "delivery:    PAUSED since" in result.stdout and "535 5.7.8" in result.stdout
    assert "attention:   SMTP delivery is paused" in result.stdout


def test_outbox_without_state_says_so(tmp_path: Path) -> None:
    result = alertd("outbox", "-c", str(write_config(tmp_path)))

    assert 0 == result.returncode
    assert "no state yet" in result.stdout


# --- templates ------------------------------------------------------------------------------------------------


def test_check_config_fails_on_a_broken_template_override(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "digest.txt.j2").write_text("{{ t.no_such_string }}", encoding="utf-8")
    config = write_config(tmp_path, extra='templates_dir = "templates"')

    result = alertd("check-config", "-c", str(config))

    assert 78 == result.returncode
    assert "digest.txt.j2" in result.stderr and "no_such_string" in result.stderr


def smtp_delivery(port: int) -> str:
    return (
        '[delivery]\nmethod = "smtp"\nfrom = "alertd@example.org"\n'
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
    )


def test_flush_says_what_it_did_with_a_deferred_message_and_flush_now_tries_it(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    original, calls = smtp_server.handler.handle_DATA, []

    async def defer_the_first(smtp: object, session: object, envelope: object) -> str:
        calls.append(1)
        return "451 4.3.0 try later" if len(calls) == 1 else await original(smtp, session, envelope)

    smtp_server.handler.handle_DATA = defer_the_first  # type: ignore[method-assign]
    config = write_config(tmp_path, smtp_delivery(smtp_server.port))
    seed_state(tmp_path, ["Alibaba ouvre un bureau à Paris"])

    first = alertd("flush", "-c", str(config))
    second = alertd("flush", "-c", str(config))
    hurried = alertd("flush", "--now", "-c", str(config))
    listed = alertd("outbox", "--json", "-c", str(config))

    assert 1 == first.returncode  # one message deferred
    assert ": retry (" in first.stdout and "451 4.3.0 try later" in first.stdout and ": sent" in first.stdout
    assert re.search(r"next attempt \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+", first.stdout), first.stdout
    assert 0 == second.returncode and "nothing pending" not in second.stdout
    assert re.search(
        r"retrying \(1 attempt, .*451 4\.3\.0 try later\), next attempt .*`alertd flush --now`", second.stdout
    )
    assert 0 == hurried.returncode, hurried.stdout + hurried.stderr
    assert ": sent" in hurried.stdout and "1 deferred message tried now (--now)" in hurried.stdout
    assert 3 == len(calls) and 2 == len(smtp_server.envelopes)
    assert json.loads(listed.stdout) == {"paused": None, "messages": []}


def test_outbox_retry_keeps_the_history_and_without_ids_retries_every_failed_or_retrying_message(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        register(store, "marie@example.org", NOW)
        failed = store.enqueue_digest("marie@example.org", "<a@alertd>", b"Subject: a\r\n\r\nx", [], NOW)
        deferred = store.enqueue_digest("marie@example.org", "<b@alertd>", b"Subject: b\r\n\r\nx", [], NOW)
        fresh = store.enqueue_digest("marie@example.org", "<c@alertd>", b"Subject: c\r\n\r\nx", [], NOW)
        assert failed and deferred and fresh
        mark_failed(store, failed, "smtp 127.0.0.1:25: 550 5.1.1 no such user", NOW)
        mark_retry(store, deferred, "smtp 127.0.0.1:25: 451 4.3.0 try later", NOW + timedelta(hours=1))

    retried = alertd("outbox", "retry", "-c", str(config))
    listed = json.loads(alertd("outbox", "--json", "-c", str(config)).stdout)

    assert 0 == retried.returncode, retried.stderr
    assert f"message {failed} requeued" in retried.stdout and f"message {deferred} requeued" in retried.stdout
    assert f"message {fresh} requeued" not in retried.stdout
    by_id = {m["id"]: m for m in listed["messages"]}
    assert (by_id[failed]["attempts"], by_id[failed]["status"]) == (1, "retrying")
    assert "550 5.1.1" in by_id[failed]["last_error"]
    assert datetime.fromisoformat(by_id[deferred]["next_attempt_at"]) <= datetime.now(UTC)
    assert by_id[fresh] == {**by_id[fresh], "attempts": 0, "status": "pending"}

    empty = tmp_path / "empty"
    empty.mkdir()
    bare = write_config(empty)
    with Store.open(empty / "var" / "alertd.sqlite3") as store:
        register(store, "marie@example.org", NOW)
        store.enqueue_digest("marie@example.org", "<d@alertd>", b"Subject: d\r\n\r\nx", [], NOW)
    nothing = alertd("outbox", "retry", "-c", str(bare))
    assert 1 == nothing.returncode and "nothing to retry" in nothing.stderr


def test_every_time_printed_carries_its_zone_and_utc_forces_utc(tmp_path: Path) -> None:
    from tests.processes import alertd as alertd_with

    config = write_config(tmp_path)
    seed_state(tmp_path, ["Alibaba ouvre un bureau à Paris"])
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        queued = store.enqueue_digest("marie@example.org", "<z@alertd>", b"Subject: z\r\n\r\nx", [], NOW)
        assert queued is not None
        mark_retry(store, queued, "smtp 127.0.0.1:25: 451 4.3.0 try later", NOW + timedelta(minutes=3))
    tokyo = {"TZ": "Asia/Tokyo"}

    status = alertd_with("status", "-c", str(config), env=tokyo).stdout
    in_utc = alertd_with("status", "--utc", "-c", str(config), env=tokyo).stdout
    box = alertd_with("outbox", "-c", str(config), env=tokyo).stdout
    box_utc = alertd_with("outbox", "--utc", "-c", str(config), env=tokyo).stdout

    marie = next(line for line in status.splitlines() if "marie@example.org" in line)
    john = next(line for line in status.splitlines() if "john@example.org" in line)
    assert re.search(r"next \d{4}-\d\d-\d\d 07:00 CE(S)?T$", marie), marie  # her digest, in her zone
    assert john.endswith("next now (due)"), john  # his schedule was last served two days ago
    assert "JST" in box and re.search(r"\d\d:\d\d:\d\d JST", box), box  # the next attempt, to the second
    assert (
        "JST" not in in_utc and "CET" not in in_utc and re.search(r"next \d{4}-\d\d-\d\d \d\d:00 UTC", in_utc)
    )
    assert "JST" not in box_utc and re.search(r"\d\d:\d\d:\d\d UTC", box_utc)
