"""Digests through the pipeline with a controlled clock: schedules across DST, quiet hours, priority alerts,
caps, languages, feed health; and the outbox against a real aiosmtpd (retry, failure, pause, refusal)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alertd import pipeline
from alertd.config import load_config
from alertd.models import Item, Match, Span
from alertd.render import load_templates
from alertd.store import Store
from alertd.watchlist import load_watchlist
from tests.smtpserver import SmtpServer
from tests.storage import add_feed, pause_delivery, record_failure, record_poll

FEED = "https://feeds.test/bfm.xml"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu", "Shein"]

[[topic]]
id = "french-exports"
name = "Exportations françaises"
priority = "immediate"
any = ["cognac", "exportations"]
"""

_keys = itertools.count()


def make_runtime(
    tmp_path: Path, subscriber: str, *, delivery: str = '[delivery]\nmethod = "maildir"', extra: str = ""
) -> pipeline.Runtime:
    """A pipeline Runtime over a real config, watchlist, store and templates (no feed fetching needed)."""
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config_path = tmp_path / "alertd.toml"
    config_path.write_text(
        f'{extra}\n[[feed]]\nname = "BFM Économie"\nurl = "{FEED}"\n\n{delivery}\n\n'
        f"[[subscriber]]\n{textwrap.dedent(subscriber)}",
        encoding="utf-8",
    )
    watchlist = load_watchlist(tmp_path / "watchlist.toml")
    config = load_config(config_path, known_topics=frozenset(t.id for t in watchlist.topics))
    return pipeline.Runtime(
        config=config,
        watchlist=watchlist,
        store=Store.open(config.state_path),
        client=None,  # type: ignore[arg-type]
        parser=None,  # type: ignore[arg-type]
        templates=load_templates(None),
        fetch_policy=None,  # type: ignore[arg-type]
    )


@pytest.fixture
def runtimes() -> Iterator[list[pipeline.Runtime]]:
    opened: list[pipeline.Runtime] = []
    yield opened
    for rt in opened:
        rt.store.close()


def subscribed(
    tmp_path: Path,
    runtimes: list[pipeline.Runtime],
    subscriber: str,
    *,
    since: datetime = T0 - timedelta(hours=1),
    **options: str,
) -> pipeline.Runtime:
    """A Runtime (see make_runtime) closed after the test, its subscriber registered at ``since``."""
    rt = make_runtime(tmp_path, subscriber, **options)
    runtimes.append(rt)
    pipeline.register_subscribers(rt, since)
    return rt


def add_match(rt: pipeline.Runtime, now: datetime, title: str, topic: str = "chinese-ecommerce") -> str:
    """Record one new item of the feed and its match, as a poll at ``now`` would."""
    key = f"item-{next(_keys)}"
    item = Item(
        key=key,
        feed_url=FEED,
        feed_name="BFM Économie",
        title=title,
        summary_text=f"{title}. Le détail de l'article.",
        summary_html="",
        link=f"https://www.bfmtv.com/economie/{key}.html",
        story_key=key,
        published=now - timedelta(minutes=5),
    )
    term = title.split()[0]
    match = Match(topic, (term.casefold(),), (Span("title", 0, len(term), term.casefold()),), 1.0)
    add_feed(rt.store, FEED, "BFM Économie")
    record_poll(rt.store, FEED, None, None, None, [item], [], [(key, match)], None, now)
    return key


def outbox_messages(rt: pipeline.Runtime) -> list[EmailMessage]:
    rows = rt.store.outbox(("pending", "sent", "failed"))
    parsed = [email.message_from_bytes(row.message, policy=email.policy.default) for row in rows]
    assert all(isinstance(m, EmailMessage) for m in parsed)
    return parsed  # type: ignore[return-value]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


# --- schedules across DST --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "wall"),
    [
        ("Europe/Paris", datetime(2026, 3, 29), "07:00"),
        ("Europe/Paris", datetime(2026, 3, 29), "02:30"),  # does not exist that day
        ("Europe/Paris", datetime(2026, 10, 25), "07:00"),
        ("Europe/Paris", datetime(2026, 10, 25), "02:30"),  # happens twice that day
        ("America/New_York", datetime(2026, 3, 8), "07:00"),
        ("America/New_York", datetime(2026, 3, 8), "02:30"),
        ("America/New_York", datetime(2026, 11, 1), "07:00"),
        ("America/New_York", datetime(2026, 11, 1), "01:30"),
    ],
)
def test_daily_digest_is_queued_exactly_once_a_day_through_dst(
    tmp_path: Path, runtimes: list[pipeline.Runtime], zone: str, day: datetime, wall: str
) -> None:
    rt = make_runtime(tmp_path, f'email = "r@example.org"\nschedule = "daily {wall}"\ntimezone = "{zone}"\n')
    runtimes.append(rt)
    tz = ZoneInfo(zone)
    start = (day - timedelta(days=2)).replace(tzinfo=tz).astimezone(UTC)
    pipeline.register_subscribers(rt, start)
    per_day: Counter[str] = Counter()
    now = start
    while now < start + timedelta(days=5):
        if now.minute == 0:
            add_match(rt, now, f"Alibaba news at {now:%d %H:%M}")
        for email_address, _ in pipeline.flush_digests(rt, now):
            assert "r@example.org" == email_address
            per_day[now.astimezone(tz).date().isoformat()] += 1
        now += timedelta(minutes=10)

    local_days = [(day + timedelta(days=d)).date().isoformat() for d in range(-1, 3)]
    assert [1, 1, 1, 1] == [per_day[d] for d in local_days], per_day
    assert set(per_day.values()) == {1}


# --- quiet hours -----------------------------------------------------------------------------------------


def test_quiet_hours_hold_immediate_mail_until_the_window_ends_and_never_drop_it(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = make_runtime(
        tmp_path,
        'email = "r@example.org"\nschedule = "immediate"\ntimezone = "Europe/Paris"\nquiet_hours = "22:00-07:00"\n',
    )
    runtimes.append(rt)
    paris = ZoneInfo("Europe/Paris")
    evening = datetime(2026, 11, 26, 21, 0, tzinfo=paris)
    pipeline.register_subscribers(rt, evening)
    late = datetime(2026, 11, 26, 23, 10, tzinfo=paris)
    add_match(rt, late, "Alibaba ouvre un bureau à Paris")
    add_match(rt, late + timedelta(hours=3), "Temu accélère en Europe")
    subscriber = rt.config.subscribers[0]

    assert [] == pipeline.flush_digests(rt, late + timedelta(hours=3))
    end = datetime(2026, 11, 27, 7, 0, tzinfo=paris)
    assert end == pipeline.next_flush_at(rt, subscriber, late + timedelta(hours=3))
    assert [] == pipeline.flush_digests(rt, end - timedelta(minutes=1))

    assert 1 == len(pipeline.flush_digests(rt, end))
    (message,) = outbox_messages(rt)
    assert "Alibaba ouvre un bureau" in text_of(message) and "Temu accélère" in text_of(message)


def test_a_daily_digest_due_in_quiet_hours_goes_when_they_end_once(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = make_runtime(
        tmp_path,
        'email = "r@example.org"\nschedule = "daily 23:00"\ntimezone = "Europe/Paris"\nquiet_hours = "22:30-06:15"\n',
    )
    runtimes.append(rt)
    paris = ZoneInfo("Europe/Paris")
    pipeline.register_subscribers(rt, datetime(2026, 11, 26, 12, 0, tzinfo=paris))
    add_match(rt, datetime(2026, 11, 26, 12, 30, tzinfo=paris), "Shein visé par une enquête")
    sent_at = []
    now = datetime(2026, 11, 26, 22, 0, tzinfo=paris)
    while now < datetime(2026, 11, 27, 12, 0, tzinfo=paris):
        if pipeline.flush_digests(rt, now):
            sent_at.append(now.astimezone(paris).strftime("%d %H:%M"))
        now += timedelta(minutes=5)

    assert ["27 06:15"] == sent_at


# --- priority topics: alerts -------------------------------------------------------------------------------


def test_priority_matches_30s_apart_share_one_alert_then_reappear_in_the_daily_digest_as_sent(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = make_runtime(
        tmp_path,
        'email = "r@example.org"\nschedule = "daily 07:00"\ntimezone = "Europe/Paris"\nlanguage = "fr"\n',
    )
    runtimes.append(rt)
    subscriber = rt.config.subscribers[0]
    pipeline.register_subscribers(rt, T0 - timedelta(hours=1))
    add_match(rt, T0, "Cognac : Pékin impose des droits antidumping", topic="french-exports")
    add_match(
        rt, T0 + timedelta(seconds=30), "Exportations de vins : record en octobre", topic="french-exports"
    )
    add_match(rt, T0 + timedelta(seconds=40), "Alibaba ouvre un bureau à Paris")  # normal priority

    assert [] == pipeline.flush_digests(rt, T0 + timedelta(seconds=30))
    assert T0 + timedelta(minutes=2) == pipeline.next_flush_at(rt, subscriber, T0 + timedelta(seconds=30))
    assert 1 == len(pipeline.flush_digests(rt, T0 + timedelta(minutes=2)))
    assert [] == pipeline.flush_digests(rt, T0 + timedelta(minutes=5))
    (alert,) = outbox_messages(rt)
    assert str(alert["Subject"]).startswith("[alertd] Alerte — Exportations françaises (2)")
    assert "Cognac" in text_of(alert) and "Exportations de vins" in text_of(alert)
    assert "Alibaba" not in text_of(alert)

    next_morning = datetime(2026, 11, 27, 7, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert 1 == len(pipeline.flush_digests(rt, next_morning))
    alert, digest = outbox_messages(rt)
    assert alert["Message-ID"] != digest["Message-ID"]
    text = text_of(digest)
    assert "Alibaba ouvre" in text and "Cognac" in text and "Exportations de vins" in text
    assert 2 == text.count("[déjà envoyé]")
    assert 2 == html_of(digest).count("déjà envoyé")
    assert text.index("Alibaba") < text.index("Cognac")  # unseen stories rank first within a topic order


def test_replayed_priority_matches_go_to_the_digest_not_to_an_alert(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    """``alertd replay --deliver`` records matches for stories seen earlier: old news is no alert."""
    rt = subscribed(
        tmp_path,
        runtimes,
        'email = "r@example.org"\nschedule = "daily 07:00"\ntimezone = "Europe/Paris"\nlanguage = "fr"\n',
    )
    item = Item(
        "replayed", FEED, "BFM Économie", "Cognac : les droits", "Cognac.", "", None, "replayed-story"
    )
    add_feed(rt.store, FEED, "BFM Économie")
    record_poll(rt.store, FEED, None, None, None, [item], [], [], None, T0)
    match = Match("french-exports", ("cognac",), (Span("title", 0, 6, "cognac"),), 1.0)
    assert 1 == rt.store.add_matches([("replayed", match)], T0 + timedelta(minutes=1))

    assert [] == pipeline.flush_digests(rt, T0 + timedelta(minutes=10))
    assert [] == outbox_messages(rt)
    next_morning = datetime(2026, 11, 27, 7, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert 1 == len(pipeline.flush_digests(rt, next_morning))
    (digest,) = outbox_messages(rt)
    assert "Cognac : les droits" in text_of(digest)
    assert "déjà envoyé" not in text_of(digest)


def test_a_new_priority_match_after_an_alert_gets_its_own_alert(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = make_runtime(tmp_path, 'email = "r@example.org"\nschedule = "weekly mon 07:00"\ntimezone = "UTC"\n')
    runtimes.append(rt)
    pipeline.register_subscribers(rt, T0 - timedelta(hours=1))
    add_match(rt, T0, "Cognac en hausse", topic="french-exports")
    assert 1 == len(pipeline.flush_digests(rt, T0 + timedelta(minutes=2)))
    add_match(rt, T0 + timedelta(hours=1), "Cognac en baisse", topic="french-exports")
    assert 1 == len(pipeline.flush_digests(rt, T0 + timedelta(hours=1, minutes=2)))

    first, second = outbox_messages(rt)
    assert "en hausse" in text_of(first) and "en hausse" not in text_of(second)


def test_debounce_is_configurable(tmp_path: Path, runtimes: list[pipeline.Runtime]) -> None:
    rt = subscribed(
        tmp_path,
        runtimes,
        'email = "r@example.org"\nschedule = "daily 07:00"\ntimezone = "UTC"\n',
        extra='[digest]\ndebounce = "10m"\n',
    )
    add_match(rt, T0, "Cognac en hausse", topic="french-exports")

    assert [] == pipeline.flush_digests(rt, T0 + timedelta(minutes=9))
    assert 1 == len(pipeline.flush_digests(rt, T0 + timedelta(minutes=10)))


# --- content: cap, language, feed health --------------------------------------------------------------------


def test_max_items_per_topic_lists_the_overflow_by_title_in_the_text_part(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = subscribed(
        tmp_path,
        runtimes,
        'email = "r@example.org"\nschedule = "immediate"\ntimezone = "UTC"\nmax_items_per_topic = 2\nlanguage = "en"\n',
    )
    for i in range(5):
        add_match(rt, T0 + timedelta(minutes=i), f"Temu story number {i}")

    pipeline.flush_digests(rt, T0 + timedelta(minutes=10))

    (message,) = outbox_messages(rt)
    text = text_of(message)
    assert "+3 more:" in text
    assert 5 == sum(f"Temu story number {i}" in text for i in range(5))
    assert 2 == text.count("Why: temu")
    assert "[alertd] 5 stories" in str(message["Subject"])


@pytest.mark.parametrize(
    ("language", "expected", "absent"),
    [
        ("fr", ['lang="fr"', "Pourquoi :", "26/11/2026 09:00", "1 article pour"], ["Why:"]),
        ("en", ['lang="en"', "Why:", "26 Nov 2026, 09:00", "1 story for"], ["Pourquoi", "26/11/2026"]),
    ],
)
def test_language_switches_fixed_strings_and_dates(
    tmp_path: Path, runtimes: list[pipeline.Runtime], language: str, expected: list[str], absent: list[str]
) -> None:
    rt = subscribed(
        tmp_path,
        runtimes,
        f'email = "r@example.org"\nschedule = "immediate"\ntimezone = "Europe/Paris"\nlanguage = "{language}"\n',
    )
    add_match(rt, T0, "Alibaba ouvre un bureau")

    pipeline.flush_digests(rt, T0)

    (message,) = outbox_messages(rt)
    both = text_of(message) + html_of(message)
    assert [e for e in expected if e not in both] == []
    assert [a for a in absent if a in both] == []


def test_feed_health_lists_long_failures_and_moves_since_the_last_digest(
    tmp_path: Path, runtimes: list[pipeline.Runtime]
) -> None:
    rt = subscribed(
        tmp_path,
        runtimes,
        'email = "r@example.org"\nschedule = "immediate"\ntimezone = "UTC"\nlanguage = "en"\n',
        extra='[digest]\nfeed_health_after = "2h"\n',
        since=T0 - timedelta(days=1),
    )
    add_match(rt, T0 - timedelta(hours=5), "Alibaba ouvre un bureau")
    record_failure(rt.store, FEED, "http_5xx", "HTTP 503", T0 - timedelta(hours=1), None)
    record_poll(
        rt.store,
        FEED,
        None,
        None,
        None,
        [],
        [],
        [],
        None,
        T0 - timedelta(minutes=30),
        events=[("moved", "moved permanently to X")],
        moved_to="https://new.example.invalid/feed",
    )
    record_failure(rt.store, FEED, "http_5xx", "HTTP 503", T0 - timedelta(minutes=10), None)

    assert [] == [h.problem for h in pipeline.feed_health(rt, T0)]  # failing for 10 min only
    later = T0 + timedelta(hours=3)
    problems = [h.problem for h in pipeline.feed_health(rt, later, events_since=T0 - timedelta(days=1))]
    assert ["failing: http_5xx (1 attempts)", "moved permanently to X"] == problems
    health = pipeline.feed_health(rt, later, events_since=T0 - timedelta(days=1))
    assert [("failing", "http_5xx", 1, None), ("moved", None, 0, "https://new.example.invalid/feed")] == [
        (h.kind, h.error_class, h.attempts, h.target) for h in health
    ]

    pipeline.flush_digests(rt, later)
    (message,) = outbox_messages(rt)
    text = " ".join(text_of(message).split())
    assert "Feed health" in text
    assert "failing: server error (HTTP 5xx) (1 attempt)" in text
    assert "moved permanently: alertd now fetches https://new.example.invalid/feed" in text


# --- the outbox against a real SMTP server ---------------------------------------------------------------


def smtp_runtime(
    tmp_path: Path, server: SmtpServer, *, smtp: str = "", timeout: str = "10s", security: str = "none"
) -> pipeline.Runtime:
    delivery = textwrap.dedent(
        f"""
        [delivery]
        method = "smtp"
        from = "alertd@example.org"
        [delivery.smtp]
        host = "{server.host}"
        port = {server.port}
        security = "{security}"
        timeout = "{timeout}"
        """
    )
    rt = make_runtime(
        tmp_path,
        'email = "r@example.org"\nschedule = "immediate"\ntimezone = "UTC"\n',
        delivery=delivery + smtp,
    )
    pipeline.register_subscribers(rt, T0 - timedelta(hours=1))
    add_match(rt, T0, "Alibaba ouvre un bureau")
    pipeline.flush_digests(rt, T0)
    return rt


async def test_451_on_rcpt_then_421_on_data_then_delivered_once_with_the_same_message_id(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    smtp_server.handler.queue("RCPT", "451 4.3.0 try later")
    smtp_server.handler.queue("DATA", "421 4.3.2 shutting down")
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)
    (queued,) = rt.store.outbox(("pending",))

    outcomes = []
    for now in (T0, T0 + timedelta(seconds=30), T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)):
        outcomes.append([a.status for a in await pipeline.drain_outbox(rt, now)])
    outcomes.append([a.status for a in await pipeline.drain_outbox(rt, T0 + timedelta(hours=2))])

    assert [["retry"], [], ["retry"], ["sent"], []] == outcomes
    assert 1 == len(smtp_server.envelopes)
    delivered = email.message_from_bytes(smtp_server.envelopes[0].content, policy=email.policy.default)
    assert queued.message_id == delivered["Message-ID"]
    (row,) = rt.store.outbox(("sent",))
    assert (3, None) == (row.attempts, row.last_error)


async def test_transient_failures_give_up_after_24_hours(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    smtp_server.handler.queue("MAIL", *["451 4.3.0 try later"] * 40)
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)

    now, statuses = T0, []
    while now <= T0 + timedelta(hours=25):
        statuses += [a.status for a in await pipeline.drain_outbox(rt, now)]
        now += timedelta(minutes=30)

    assert "failed" == statuses[-1] and set(statuses[:-1]) == {"retry"}
    assert (
        24 <= len(statuses) <= 30
    )  # 1, 2, 4 ... 60 min apart: about one attempt an hour after the first few
    (failed,) = rt.store.outbox(("failed",))
    assert "gave up after 1 day" in (failed.last_error or "")


async def test_550_fails_at_once_and_is_never_retried(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    smtp_server.handler.queue("RCPT", "550 5.1.1 no such user")
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)

    first = await pipeline.drain_outbox(rt, T0)
    commands = len(smtp_server.commands)
    later = await pipeline.drain_outbox(rt, T0 + timedelta(hours=2))

    assert (["failed"], []) == ([a.status for a in first], later)
    assert commands == len(smtp_server.commands)
    (row,) = rt.store.outbox(("failed",))
    assert "550" in (row.last_error or "")


async def test_535_pauses_smtp_delivery_until_resumed(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.credentials.add(("alertd", "right"))
    rt = smtp_runtime(tmp_path, smtp_server, smtp='username = "alertd"\n')
    runtimes.append(rt)
    rt.smtp_password = "wrong"

    first = await pipeline.drain_outbox(rt, T0)
    commands = len(smtp_server.commands)
    second = await pipeline.drain_outbox(rt, T0 + timedelta(hours=1))

    assert ["paused"] == [a.status for a in first] == [a.status for a in second]
    assert commands == len(smtp_server.commands), "a paused delivery must not talk to the server"
    pause = rt.store.delivery_pause()
    assert pause is not None and "535" in pause.reason
    (row,) = rt.store.outbox(("pending", "failed"))
    assert "pending" == row.status, "a configuration error must not fail the message"

    rt.smtp_password = "right"
    pipeline.resume_delivery(rt, "the configuration was reloaded")
    third = await pipeline.drain_outbox(rt, T0 + timedelta(hours=2))
    assert ["sent"] == [a.status for a in third]
    assert 1 == len(smtp_server.envelopes)


async def test_a_pause_ends_by_itself_when_the_delivery_settings_change(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)
    pause_delivery(rt.store, "535 from an older config", "0123456789abcdef", T0)

    attempts = await pipeline.drain_outbox(rt, T0)

    assert ["sent"] == [a.status for a in attempts]
    assert rt.store.delivery_pause() is None


async def test_no_starttls_with_credentials_fails_closed_and_pauses(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    rt = smtp_runtime(tmp_path, smtp_server, smtp='username = "alertd"\n', security="starttls")
    runtimes.append(rt)
    rt.smtp_password = "secret"

    attempts = await pipeline.drain_outbox(rt, T0)

    assert ["paused"] == [a.status for a in attempts]
    assert not smtp_server.saw("AUTH") and not smtp_server.saw("MAIL")
    assert "STARTTLS" in (attempts[0].error or "").upper()
    assert "pending" == rt.store.outbox(("pending",))[0].status


async def test_a_server_that_never_greets_is_retried_after_the_deadline(
    tmp_path: Path, runtimes: list[pipeline.Runtime], silent_server: tuple[str, int]
) -> None:
    host, port = silent_server
    fake = SmtpServer(host, port, None, [], None, None)  # type: ignore[arg-type]
    rt = smtp_runtime(tmp_path, fake, timeout="1s")
    runtimes.append(rt)

    started = time.monotonic()
    attempts = await pipeline.drain_outbox(rt, T0)

    assert ["retry"] == [a.status for a in attempts]
    assert time.monotonic() - started < 5
    (row,) = rt.store.outbox(("pending",))
    assert T0 + timedelta(minutes=1) == row.next_attempt_at


async def test_partial_refusal_counts_as_sent_and_records_the_refused_recipient(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    smtp_server.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)
    message = EmailMessage()
    message["From"] = "alertd@example.org"
    message["To"] = "r@example.org, gone@example.org"
    message["Message-ID"] = "<two-recipients@alertd>"
    message["Subject"] = "[alertd] 1 story"
    message.set_content("hello")
    rt.store.enqueue_digest("r@example.org", "<two-recipients@alertd>", bytes(message), [], T0)

    attempts = await pipeline.drain_outbox(rt, T0)

    assert ["sent", "sent"] == [a.status for a in attempts]
    assert [["r@example.org"], ["r@example.org"]] == [e.rcpt_tos for e in smtp_server.envelopes]
    row = next(r for r in rt.store.outbox(("sent",)) if r.message_id == "<two-recipients@alertd>")
    assert "gone@example.org: 550" in (row.last_error or "")


async def test_concurrent_drains_send_once(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer
) -> None:
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)

    await asyncio.gather(pipeline.drain_outbox(rt, T0), pipeline.drain_outbox(rt, T0))

    assert 1 == len(smtp_server.envelopes)


async def test_a_send_that_cannot_be_recorded_is_never_sent_again_and_is_recorded_later(
    tmp_path: Path, runtimes: list[pipeline.Runtime], smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server accepts; recording it fails (a full disk): later drains send nothing until it is recorded."""
    full = tmp_path / "full"
    monkeypatch.setenv("ALERTD_FAILPOINT", "state_full")
    monkeypatch.setenv("ALERTD_STATE_FULL_FLAG", str(full))
    original = smtp_server.handler.handle_DATA

    async def fill(server: Any, session: Any, envelope: Any) -> str:
        full.touch()
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = fill  # type: ignore[method-assign]
    rt = smtp_runtime(tmp_path, smtp_server)
    runtimes.append(rt)

    first = await pipeline.drain_outbox(rt, T0)
    later = [await pipeline.drain_outbox(rt, T0 + timedelta(minutes=m)) for m in (1, 2, 60)]

    assert ["sent"] == [a.status for a in first]
    assert [[], [], []] == later
    assert 1 == len(smtp_server.envelopes)
    assert rt.state_problem is not None and "cannot be written" in rt.state_problem
    full.unlink()
    assert [] == await pipeline.drain_outbox(rt, T0 + timedelta(hours=2))
    assert (None, []) == (rt.state_problem, rt.unrecorded)
    assert [("sent", 1)] == [
        (m.status, m.attempts) for m in rt.store.outbox(("pending", "sending", "sent", "failed"))
    ]
    assert 1 == len(smtp_server.envelopes)
