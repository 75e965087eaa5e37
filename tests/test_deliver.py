"""deliver: Maildir, mbox and SMTP against real servers on 127.0.0.1; error classes; the SMTP password."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import mailbox
import ssl
import stat
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from alertd.config import DeliveryConfig, SmtpConfig
from alertd.deliver import deliver, read_smtp_password
from alertd.errors import (
    AuthDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    SmtpSetupError,
    TransientDeliveryError,
)
from alertd.models import DeliveryReport
from alertd.render import load_templates, render_digest
from tests.smtpserver import DROP, ServerFactory, SmtpServer
from tests.test_digest import digest_of, matched_item
from tests.test_render import EXPECTED_HEADERS

PASSWORD = "s3cret-Pa55-never-logged"
MESSAGE_ID = "<0123456789abcdef@alertd>"


def make_message(*recipients: str, body: str = "Bonjour,\nFrom here on, news.\n") -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = "[alertd] 1 story"
    message["From"] = "alertd@example.invalid"
    message["To"] = ", ".join(recipients or ("marie@example.invalid",))
    message["Message-ID"] = MESSAGE_ID
    message.set_content(body, charset="utf-8")
    return message


def smtp_config(server: SmtpServer, **smtp: object) -> DeliveryConfig:
    options: dict[str, object] = {"host": server.host, "port": server.port, "security": "none"}
    options.update(smtp)
    return DeliveryConfig(method="smtp", smtp=SmtpConfig(**options))  # type: ignore[arg-type]


def mbox_headers(path: Path, name: str) -> list[str]:
    box = mailbox.mbox(path, create=False)
    try:
        return [str(m[name]) for m in box]
    finally:
        box.close()


def parse(content: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- Maildir -----------------------------------------------------------------------------------


async def test_maildir_delivery_lands_in_new_and_parses(tmp_path: Path) -> None:
    config = DeliveryConfig(method="maildir", maildir=Path("var/mail"))

    report = await deliver(make_message(), config, base_dir=tmp_path)

    root = tmp_path / "var" / "mail"
    assert report.location is not None
    assert root / "new" == report.location.parent
    assert list((root / "tmp").iterdir()) == []
    assert parse(report.location.read_bytes())["Message-ID"] == MESSAGE_ID
    assert (
        report.method,
        report.accepted,
        report.message_id,
    ) == ("maildir", ("marie@example.invalid",), MESSAGE_ID)


async def test_maildir_directories_are_private_whatever_the_umask(tmp_path: Path) -> None:
    config = DeliveryConfig(method="maildir", maildir=Path("mail"))

    await deliver(make_message(), config, base_dir=tmp_path)

    modes = {sub: stat.S_IMODE((tmp_path / "mail" / sub).stat().st_mode) for sub in ("", "cur", "new", "tmp")}
    assert modes == {"": 0o700, "cur": 0o700, "new": 0o700, "tmp": 0o700}


async def test_maildir_names_are_unique_and_readable_by_mailbox(tmp_path: Path) -> None:
    config = DeliveryConfig(method="maildir", maildir=Path("mail"))

    reports = await asyncio.gather(*(deliver(make_message(), config, base_dir=tmp_path) for _ in range(5)))

    assert len({r.location for r in reports}) == 5
    assert len(mailbox.Maildir(tmp_path / "mail", create=False)) == 5


async def test_maildir_unwritable_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    config = DeliveryConfig(method="maildir", maildir=Path("file/mail"))

    with pytest.raises(PermanentDeliveryError, match="Maildir"):
        await deliver(make_message(), config, base_dir=tmp_path)


# --- mbox --------------------------------------------------------------------------------------


async def test_mbox_two_appends_give_two_messages(tmp_path: Path) -> None:
    config = DeliveryConfig(method="mbox", mbox=Path("var/alertd.mbox"))

    await deliver(make_message(), config, base_dir=tmp_path)
    report = await deliver(make_message("paul@example.invalid"), config, base_dir=tmp_path)

    assert tmp_path / "var" / "alertd.mbox" == report.location
    assert mbox_headers(report.location, "To") == ["marie@example.invalid", "paul@example.invalid"]


async def test_mbox_quotes_from_lines_in_the_body(tmp_path: Path) -> None:
    config = DeliveryConfig(method="mbox", mbox=Path("alertd.mbox"))

    await deliver(make_message(body="Hello\nFrom the desk\n>From quoted\n"), config, base_dir=tmp_path)
    await deliver(make_message(), config, base_dir=tmp_path)

    assert len(mbox_headers(tmp_path / "alertd.mbox", "Message-ID")) == 2
    assert b"\n>From the desk\n>>From quoted\n" in (tmp_path / "alertd.mbox").read_bytes()
    assert stat.S_IMODE((tmp_path / "alertd.mbox").stat().st_mode) == 0o600


async def test_mbox_append_after_a_file_without_trailing_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "alertd.mbox"
    path.write_bytes(b"From someone Thu Nov 26 06:00:00 2026\nSubject: old\n\nold body")
    config = DeliveryConfig(method="mbox", mbox=Path("alertd.mbox"))

    await deliver(make_message(), config, base_dir=tmp_path)

    assert mbox_headers(path, "Subject") == ["old", "[alertd] 1 story"]


# --- SMTP: success -----------------------------------------------------------------------------


async def test_smtp_delivers_with_explicit_envelope(smtp_server: SmtpServer) -> None:
    report = await deliver(
        make_message("marie@example.invalid", "paul@example.invalid"),
        smtp_config(smtp_server),
        base_dir=Path("/nonexistent"),
        envelope_sender="bounces@example.invalid",
        recipients=["archive@example.invalid"],
    )

    (envelope,) = smtp_server.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("bounces@example.invalid", ["archive@example.invalid"])
    assert parse(envelope.content)["Message-ID"] == MESSAGE_ID
    expected = DeliveryReport(
        "smtp", MESSAGE_ID, ("archive@example.invalid",), smtp_reply="2.0.0 OK queued as 42"
    )
    assert report == expected


async def test_smtp_envelope_defaults_to_the_message_headers(smtp_server: SmtpServer) -> None:
    await deliver(
        make_message("Marie <marie@example.invalid>", "paul@example.invalid"),
        smtp_config(smtp_server),
        base_dir=Path(),
    )

    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "alertd@example.invalid"
    assert envelope.rcpt_tos == ["marie@example.invalid", "paul@example.invalid"]


async def test_hostile_digest_is_delivered_with_only_the_expected_headers(smtp_server: SmtpServer) -> None:
    hostile = (
        "Titre\r\nReply-To: x@evil.invalid =?UTF-8?Q?=0A?=Bcc: y@evil.invalid\u2028<script>alert(1)</script>"
    )
    digest = digest_of(
        [
            matched_item("hostile", title=hostile, summary=hostile, link="javascript:alert(1)", score=2.0),
            matched_item("poison", title="Poison", feed="bad \ud800 feed name"),
        ]
    )

    await deliver(render_digest(digest, load_templates(None)), smtp_config(smtp_server), base_dir=Path())

    (envelope,) = smtp_server.envelopes
    received = parse(envelope.content)
    assert sorted(name.lower() for name in received) == EXPECTED_HEADERS
    assert (received["Reply-To"], received["Bcc"]) == (None, None)
    html = received.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "javascript:" not in html.get_content()
    assert "Poison" not in envelope.content.decode()


async def test_smtp_partial_refusal_reports_accepted_and_refused(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["gone@example.invalid"] = "550 5.1.1 no such user"

    report = await deliver(
        make_message("marie@example.invalid", "gone@example.invalid"),
        smtp_config(smtp_server),
        base_dir=Path(),
    )

    assert report.accepted == ("marie@example.invalid",)
    assert report.refused == {"gone@example.invalid": (550, "5.1.1 no such user")}
    assert smtp_server.envelopes[0].rcpt_tos == ["marie@example.invalid"]


async def test_starttls_with_credentials_authenticates_after_tls(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server_factory(starttls=True, auth_require_tls=True)
    server.handler.credentials.add(("alertd", PASSWORD))
    config = smtp_config(server, security="starttls", username="alertd")

    report = await deliver(
        make_message(), config, base_dir=Path(), password=PASSWORD, tls_context=client_tls_context
    )

    assert report.accepted == ("marie@example.invalid",)
    assert [c.split(" ")[0] for c in server.commands[:4]] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


async def test_implicit_tls_delivers(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server_factory(implicit_tls=True)

    await deliver(
        make_message(),
        smtp_config(server, security="tls"),
        base_dir=Path(),
        tls_context=client_tls_context,
    )

    assert len(server.envelopes) == 1


# --- SMTP: failures ----------------------------------------------------------------------------


async def test_rcpt_451_is_transient_and_a_retry_delivers_once_with_same_message_id(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.queue("RCPT", "451 4.3.0 try later")
    message = make_message()

    with pytest.raises(TransientDeliveryError, match="451"):
        await deliver(message, smtp_config(smtp_server), base_dir=Path())
    await deliver(message, smtp_config(smtp_server), base_dir=Path())

    assert [parse(e.content)["Message-ID"] for e in smtp_server.envelopes] == [MESSAGE_ID]


async def test_data_421_is_transient(smtp_server: SmtpServer) -> None:
    smtp_server.handler.queue("DATA", "421 4.3.2 shutting down")

    with pytest.raises(TransientDeliveryError, match="421"):
        await deliver(make_message(), smtp_config(smtp_server), base_dir=Path())


async def test_connection_dropped_after_data_is_transient(smtp_server: SmtpServer) -> None:
    smtp_server.handler.queue("DATA", DROP)

    with pytest.raises(TransientDeliveryError):
        await deliver(make_message(), smtp_config(smtp_server), base_dir=Path())


async def test_connection_refused_is_transient(smtp_server: SmtpServer) -> None:
    smtp_server.stop_listening()

    with pytest.raises(TransientDeliveryError, match="connection failed"):
        await deliver(make_message(), smtp_config(smtp_server), base_dir=Path())


@pytest.mark.parametrize("phase", ["MAIL", "DATA"])
async def test_550_is_permanent(smtp_server: SmtpServer, phase: str) -> None:
    smtp_server.handler.queue(phase, "550 5.7.1 rejected by policy")

    with pytest.raises(PermanentDeliveryError, match="550") as caught:
        await deliver(make_message(), smtp_config(smtp_server), base_dir=Path())
    assert not isinstance(caught.value, SmtpSetupError)


@pytest.mark.parametrize(
    ("reply", "error"),
    [("550 5.1.1 unknown", PermanentDeliveryError), ("450 4.2.0 busy", TransientDeliveryError)],
)
async def test_every_recipient_refused_follows_the_reply_class(
    smtp_server: SmtpServer, reply: str, error: type[Exception]
) -> None:
    smtp_server.handler.rcpt_replies["marie@example.invalid"] = reply

    with pytest.raises(error, match="every recipient refused"):
        await deliver(make_message(), smtp_config(smtp_server), base_dir=Path())


async def test_address_the_client_cannot_send_is_permanent(smtp_server: SmtpServer) -> None:
    with pytest.raises(PermanentDeliveryError):
        await deliver(
            make_message(), smtp_config(smtp_server), base_dir=Path(), recipients=["mariè@example.invalid"]
        )
    assert smtp_server.envelopes == []


async def test_535_is_an_auth_error(smtp_server: SmtpServer) -> None:
    smtp_server.handler.queue("AUTH", "535 5.7.8 Authentication credentials invalid")
    config = smtp_config(smtp_server, username="alertd")  # security "none" is allowed on loopback

    with pytest.raises(AuthDeliveryError, match="535"):
        await deliver(make_message(), config, base_dir=Path(), password=PASSWORD)
    assert smtp_server.envelopes == []


async def test_wrong_password_is_an_auth_error(smtp_server: SmtpServer) -> None:
    smtp_server.handler.credentials.add(("alertd", "the-right-one"))

    with pytest.raises(AuthDeliveryError):
        await deliver(
            make_message(), smtp_config(smtp_server, username="alertd"), base_dir=Path(), password=PASSWORD
        )


async def test_starttls_not_offered_fails_closed_without_auth(smtp_server: SmtpServer) -> None:
    config = smtp_config(smtp_server, security="starttls", username="alertd")

    with pytest.raises(SmtpSetupError, match="STARTTLS"):
        await deliver(make_message(), config, base_dir=Path(), password=PASSWORD)

    assert smtp_server.saw("EHLO")
    assert (smtp_server.saw("AUTH"), smtp_server.saw("MAIL"), smtp_server.envelopes) == (False, False, [])


async def test_untrusted_certificate_sends_nothing(smtp_server_factory: ServerFactory) -> None:
    server = smtp_server_factory(starttls=True, auth_require_tls=True)
    config = smtp_config(server, security="starttls", username="alertd")

    with pytest.raises(TransientDeliveryError):  # system trust store: the test CA is unknown
        await deliver(make_message(), config, base_dir=Path(), password=PASSWORD)

    assert (server.saw("AUTH"), server.saw("MAIL")) == (False, False)


async def test_credentials_in_clear_to_a_remote_host_are_refused_before_connecting() -> None:
    config = DeliveryConfig(
        method="smtp",
        smtp=SmtpConfig(host="mail.example.invalid", port=25, security="none", username="alertd"),
    )

    with pytest.raises(SmtpSetupError, match="without TLS"):
        await deliver(make_message(), config, base_dir=Path(), password=PASSWORD)


async def test_username_without_password_is_a_setup_error(smtp_server: SmtpServer) -> None:
    with pytest.raises(SmtpSetupError, match="no password"):
        await deliver(make_message(), smtp_config(smtp_server, username="alertd"), base_dir=Path())
    assert smtp_server.commands == []


async def test_silent_server_times_out_within_the_deadline(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    config = DeliveryConfig(
        method="smtp", smtp=SmtpConfig(host=host, port=port, security="none", timeout=timedelta(seconds=0.5))
    )

    started = time.monotonic()
    with pytest.raises(TransientDeliveryError, match=r"0\.5s"):
        await deliver(make_message(), config, base_dir=Path())

    assert time.monotonic() - started < 2.0


# --- the password ------------------------------------------------------------------------------


def write_secret(path: Path, mode: int, secret: str = PASSWORD) -> Path:
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def test_password_file_is_read_relative_to_base_dir(tmp_path: Path) -> None:
    write_secret(tmp_path / "smtp.pass", 0o600)

    assert (
        read_smtp_password(SmtpConfig(password_file=Path("smtp.pass")), base_dir=tmp_path, environ={})
        == PASSWORD
    )


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    write_secret(tmp_path / "smtp.pass", 0o644)

    with pytest.raises(ConfigError, match="0644") as caught:
        read_smtp_password(SmtpConfig(password_file=Path("smtp.pass")), base_dir=tmp_path, environ={})
    assert PASSWORD not in str(caught.value)


def test_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_smtp_password(SmtpConfig(password_file=Path("nope")), base_dir=tmp_path, environ={})


def test_systemd_credential_wins_over_file_and_environment(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    write_secret(credentials / "smtp_password", 0o400, "from-systemd")
    write_secret(tmp_path / "smtp.pass", 0o600, "from-file")

    password = read_smtp_password(
        SmtpConfig(password_file=Path("smtp.pass")),
        base_dir=tmp_path,
        environ={"CREDENTIALS_DIRECTORY": str(credentials), "ALERTD_SMTP_PASSWORD": "from-env"},
    )

    assert password == "from-systemd"


def test_environment_is_the_last_resort(tmp_path: Path) -> None:
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path), "ALERTD_SMTP_PASSWORD": "from-env"}

    assert read_smtp_password(SmtpConfig(), base_dir=tmp_path, environ=environ) == "from-env"
    assert None is read_smtp_password(SmtpConfig(), base_dir=tmp_path, environ={})


async def test_password_never_reaches_the_logs(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_server_factory(starttls=True, auth_require_tls=True)
    server.handler.credentials.add(("alertd", PASSWORD))
    config = smtp_config(server, security="starttls", username="alertd")
    await deliver(make_message(), config, base_dir=Path(), password=PASSWORD, tls_context=client_tls_context)
    server.handler.credentials.clear()  # the same password is now refused (every mechanism gets 535)
    with pytest.raises(AuthDeliveryError) as caught:
        await deliver(
            make_message(), config, base_dir=Path(), password=PASSWORD, tls_context=client_tls_context
        )

    assert caplog.records, "expected log records to scan"
    assert [r.getMessage() for r in caplog.records if PASSWORD in r.getMessage() + str(r.exc_info)] == []
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value.__cause__)
