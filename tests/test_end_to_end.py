"""alertd as a user runs it: a real subprocess polls a real HTTP server and writes real mail.

The feed is BFM-like (title, link, description = lede + <br /><br /><img>, RFC-822 pubDate), served on
127.0.0.1; state is a real SQLite file; digests land in a real Maildir or reach a real aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3
import textwrap
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd

NOW = datetime.now(timezone.utc)

ALIBABA = {
    "title": "Alibaba ouvre un bureau en France pour aider les marques à exporter",
    "link": "https://www.bfmtv.com/economie/entreprises/alibaba-ouvre-un-bureau-en-france_AN-201509150001.html",
    "lede": "Le géant chinois de l'e-commerce veut aider les enseignes françaises à vendre en Chine.",
    "image": "https://images.bfmtv.com/alibaba.jpg",
    "pub_date": NOW - timedelta(minutes=30),
}
COGNAC = {
    "title": "La filière du cognac face à l'enquête antidumping chinoise",
    "link": "https://www.bfmtv.com/economie/international/cognac-antidumping_AD-202405040215.html",
    "lede": "Les exportations de cognac vers la Chine sont menacées par des droits de douane.",
    "image": "https://images.bfmtv.com/cognac.jpg",
    "pub_date": NOW - timedelta(minutes=20),
}
PISCINES = {
    "title": "Le traitement de l'eau des piscines publiques",
    "link": "https://www.bfmtv.com/economie/replay-emissions/piscines_VN-202405040217.html",
    "lede": "Une PME spécialisée dans les services techniques aux collectivités.",
    "image": "https://images.bfmtv.com/piscine.jpg",
    "pub_date": NOW - timedelta(minutes=10),
}
TEMU = {
    "title": "Temu et Shein visés par une nouvelle taxe sur les petits colis",
    "link": "https://www.bfmtv.com/economie/consommation/temu-shein-petits-colis_AN-202410010001.html",
    "lede": "Le gouvernement veut freiner l'afflux de colis venus de Chine.",
    "image": "https://images.bfmtv.com/colis.jpg",
    "pub_date": NOW,
}

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "AliExpress", "Temu", "Shein", "petits colis"]

[[topic]]
id = "french-exports"
name = "Exportations françaises"
any = ["exportations", "cognac", "balance commerciale"]
"""


def write_config(tmp_path: Path, feed_url: str, *, delivery: str, first_poll: str = "alert") -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "{first_poll}"
            timeout = "10s"

            [[feed]]
            name = "BFM Économie"
            url = "{feed_url}"

            {delivery}

            [[subscriber]]
            email = "reader@example.org"
            name = "Reader"
            schedule = "immediate"
            timezone = "Europe/Paris"
            """
        ),
        encoding="utf-8",
    )
    return config


def maildir_messages(maildir: Path) -> list[EmailMessage]:
    files = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
    messages = []
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.fixture
def bfm(feed_server: FeedServer) -> str:
    feed_server.route("/rss/economie/", make_rss([ALIBABA, COGNAC, PISCINES]))
    return feed_server.url("/rss/economie/")


def test_run_once_writes_the_matching_stories_to_the_maildir_once(
    tmp_path: Path, feed_server: FeedServer, bfm: str
) -> None:
    config = write_config(tmp_path, bfm, delivery='[delivery]\nmethod = "maildir"')

    first = alertd("run", "--once", "-c", str(config))
    assert 0 == first.returncode, first.stdout + first.stderr
    messages = maildir_messages(tmp_path / "var/mail")
    assert 1 == len(messages)
    text, html = parts(messages[0])
    for part in (text, html):
        assert "Alibaba ouvre un bureau en France" in part
        assert "cognac" in part
        assert "piscines" not in part
    assert "E-commerce chinois" in text and "Exportations françaises" in text
    assert "<img" not in html and "<script" not in html

    second = alertd("run", "--once", "-c", str(config))
    assert 0 == second.returncode, second.stdout + second.stderr
    assert 1 == len(maildir_messages(tmp_path / "var/mail")), (
        "a second run with nothing new must send nothing"
    )

    feed_server.route("/rss/economie/", make_rss([TEMU, ALIBABA, COGNAC, PISCINES]))
    third = alertd("run", "--once", "-c", str(config))
    assert 0 == third.returncode, third.stdout + third.stderr
    messages = maildir_messages(tmp_path / "var/mail")
    assert 2 == len(messages)
    newest = max(messages, key=lambda m: parts(m)[0].count("Temu"))
    text, _ = parts(newest)
    assert "Temu et Shein" in text
    assert "Alibaba ouvre" not in text, "an item already sent must not be sent again"

    fourth = alertd("run", "--once", "-c", str(config))
    assert 0 == fourth.returncode
    assert 2 == len(maildir_messages(tmp_path / "var/mail"))
    db = sqlite3.connect(tmp_path / "var/alertd.sqlite3")
    assert ("ok",) == db.execute("PRAGMA integrity_check").fetchone()
    assert (2,) == db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()


def test_first_poll_seeds_silently_then_alerts_only_new_items(
    tmp_path: Path, feed_server: FeedServer, bfm: str
) -> None:
    config = write_config(tmp_path, bfm, delivery='[delivery]\nmethod = "maildir"', first_poll="seed")

    first = alertd("run", "--once", "-c", str(config))
    assert 0 == first.returncode, first.stdout + first.stderr
    assert [] == maildir_messages(tmp_path / "var/mail")
    assert "3 items marked seen without alerting" in first.stdout

    feed_server.route("/rss/economie/", make_rss([TEMU, ALIBABA, COGNAC, PISCINES]))
    second = alertd("run", "--once", "-c", str(config))
    assert 0 == second.returncode, second.stdout + second.stderr
    messages = maildir_messages(tmp_path / "var/mail")
    assert 1 == len(messages)
    text, _ = parts(messages[0])
    assert "Temu et Shein" in text
    assert "Alibaba" not in text


def test_digest_reaches_a_real_smtp_server(
    tmp_path: Path, feed_server: FeedServer, bfm: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    delivery = textwrap.dedent(
        f"""
        [delivery]
        method = "smtp"
        from = "alertd@example.org"
        [delivery.smtp]
        host = "127.0.0.1"
        port = {smtp_server.port}
        security = "none"
        """
    )
    config = write_config(tmp_path, bfm, delivery=delivery)
    run = alertd("run", "--once", "-c", str(config))
    assert 0 == run.returncode, run.stdout + run.stderr
    assert 1 == len(smtp_server.messages)
    envelope = smtp_server.messages[0]
    assert ["reader@example.org"] == envelope.rcpt_tos
    assert "alertd@example.org" == envelope.mail_from
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text, html = parts(message)
    assert "Alibaba ouvre un bureau en France" in text and "Alibaba ouvre un bureau en France" in html
    assert "piscines" not in text
    assert message["Auto-Submitted"] == "auto-generated"

    again = alertd("run", "--once", "-c", str(config))
    assert 0 == again.returncode
    assert 1 == len(smtp_server.messages)


def test_a_failing_feed_makes_run_once_exit_1_and_say_which(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/broken.xml", b"oops", status=500)
    config = write_config(tmp_path, feed_server.url("/broken.xml"), delivery='[delivery]\nmethod = "maildir"')
    run = alertd("run", "--once", "-c", str(config))
    assert 1 == run.returncode
    assert "broken.xml" in run.stdout and "http_5xx" in run.stdout


def test_invalid_config_exits_78_with_a_located_message(tmp_path: Path) -> None:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        '[poll]\ninterval = "often"\n[[subscriber]]\nemail = "a@b.c"\nschedule = "daily 7"\n',
        encoding="utf-8",
    )
    for command in (["check-config"], ["run", "--once"], ["run"]):
        result = alertd(*command, "-c", str(config))
        assert 78 == result.returncode
        assert f"{config}:2:1: poll.interval: invalid duration 'often'" in result.stderr
        assert f"{config}:5:1: subscriber[0].schedule: invalid schedule 'daily 7'" in result.stderr


def test_check_config_accepts_the_shipped_example() -> None:
    repo = Path(__file__).resolve().parents[1]
    result = alertd("check-config", "-c", str(repo / "config" / "alertd.toml"))
    assert 0 == result.returncode, result.stderr
    assert "topics: chinese-ecommerce, french-exports" in result.stdout
    assert "delivery:    maildir" in result.stdout


def test_a_one_story_mail_leads_with_its_headline_and_says_who_to_write_to(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/rss/conso/", make_rss([TEMU]))
    config = write_config(tmp_path, feed_server.url("/rss/conso/"), delivery='[delivery]\nmethod = "maildir"')
    with config.open("a", encoding="utf-8") as more:
        more.write('\n[digest]\nadmin_contact = "Alice Martin <alice@example.org>"\n')

    run = alertd("run", "--once", "-c", str(config))

    assert run.returncode == 0, run.stdout + run.stderr
    (message,) = maildir_messages(tmp_path / "var/mail")
    assert message["Subject"] == f"{TEMU['title']} [alertd · E-commerce chinois]"
    assert message["List-Unsubscribe"] == (
        "<mailto:alice@example.org?subject=unsubscribe%20reader%40example.org%20chinese-ecommerce>"
    )
    for part in parts(message):
        flat = " ".join(part.split())
        assert "Alice Martin" in flat and str(tmp_path) not in flat


def _loopback_host_name() -> str:
    """A name of this machine that resolves to a loopback address and is not ``localhost`` (which alertd allows
    as it allows a literal address); skips when there is none."""
    import ipaddress
    import socket

    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}
    except OSError:
        addresses = set()
    if name == "localhost" or "127.0.0.1" not in addresses:
        pytest.skip(f"this machine's name {name!r} does not resolve to 127.0.0.1")
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)
    return name


def test_a_feed_on_a_private_address_is_refused_unless_the_config_allows_its_network(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.route("/intranet.xml", make_rss([TEMU]))
    url = feed_server.url("/intranet.xml", host=_loopback_host_name())
    config = write_config(tmp_path, url, delivery='[delivery]\nmethod = "maildir"')

    refused = alertd("run", "--once", "-c", str(config))

    assert refused.returncode == 1
    assert "ssrf_blocked" in refused.stdout + refused.stderr
    assert maildir_messages(tmp_path / "var/mail") == []

    text = config.read_text(encoding="utf-8").replace(
        "[poll]\n", '[poll]\nallow_private = ["127.0.0.0/8"]\n', 1
    )
    config.write_text(text, encoding="utf-8")
    allowed = alertd("run", "--once", "-c", str(config))

    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    (message,) = maildir_messages(tmp_path / "var/mail")
    assert TEMU["title"] in message["Subject"]
