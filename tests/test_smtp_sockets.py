"""Every SMTP attempt ends with its connection closed, whatever the outcome: no socket outlives ``deliver()``.

A leaked client socket is a file descriptor a daemon loses for good on that path, once per attempt. Each test
counts this process's sockets connected to the test server (psutil) the moment the attempt returns, without
waiting: closing must be part of the attempt. Then, once the server has dropped its own side, the process
holds exactly the sockets it held before.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psutil
import pytest

from alertd.config import DeliveryConfig, SmtpConfig
from alertd.deliver import deliver, smtp_conversation
from alertd.errors import (
    AuthDeliveryError,
    DeliveryError,
    PermanentDeliveryError,
    SmtpSetupError,
    TransientDeliveryError,
)
from tests.processes import wait_for
from tests.smtpserver import DROP, ServerFactory, SmtpServer
from tests.test_deliver import PASSWORD, make_message, smtp_config


def sockets_to(port: int) -> list[Any]:
    """This process's TCP sockets whose far end is ``port``: the client side of connections to a server."""
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def socket_count() -> int:
    """Every socket this process holds (clients, servers, listeners)."""
    return sum(1 for c in psutil.Process().net_connections(kind="all"))


async def attempt_and_count(
    port: int, attempt: Callable[[], Awaitable[object]], expected: type[BaseException] | None
) -> list[Any]:
    """Run ``attempt``, check it ends as ``expected``, and return the sockets still open to ``port``."""
    if expected is None:
        await attempt()
    else:
        with pytest.raises(expected):
            await attempt()
    return sockets_to(port)


def start(factory: ServerFactory, server_kind: str) -> SmtpServer:
    return factory(starttls=server_kind == "starttls", implicit_tls=server_kind == "tls")


# (outcome, server: plain | starttls | tls, client security, what the server is told, the error expected)
OUTCOMES = [
    ("accepted", "plain", "none", [], None),
    ("accepted", "starttls", "starttls", [], None),
    ("accepted", "tls", "tls", [], None),
    ("4xx at RCPT", "plain", "none", [("RCPT", "451 4.3.0 try later")], TransientDeliveryError),
    ("4xx at DATA", "starttls", "starttls", [("DATA", "451 4.3.0 try later")], TransientDeliveryError),
    ("5xx at MAIL", "plain", "none", [("MAIL", "550 5.7.1 rejected")], PermanentDeliveryError),
    ("5xx at DATA", "tls", "tls", [("DATA", "554 5.6.0 content rejected")], PermanentDeliveryError),
    ("535 in clear", "plain", "none", [("AUTH", "535 5.7.8 bad credentials")], AuthDeliveryError),
    ("535 after STARTTLS", "starttls", "starttls", [("AUTH", "535 5.7.8 bad")], AuthDeliveryError),
    ("no STARTTLS offered", "plain", "starttls", [], SmtpSetupError),
    ("dropped before the final reply", "plain", "none", [("DATA", DROP)], TransientDeliveryError),
    ("dropped before the final reply", "starttls", "starttls", [("DATA", DROP)], TransientDeliveryError),
    ("dropped at the greeting", "plain", "none", [("EHLO", DROP)], TransientDeliveryError),
]


@pytest.mark.parametrize(
    ("outcome", "server_kind", "security", "script", "expected"),
    OUTCOMES,
    ids=[f"{row[0]} ({row[1]})" for row in OUTCOMES],
)
async def test_an_smtp_attempt_leaves_no_socket_open(
    smtp_server_factory: ServerFactory,
    client_tls_context: ssl.SSLContext,
    outcome: str,
    server_kind: str,
    security: str,
    script: list[tuple[str, str]],
    expected: type[DeliveryError] | None,
) -> None:
    server = start(smtp_server_factory, server_kind)
    for phase, reply in script:
        server.handler.queue(phase, reply)
    needs_auth = outcome.startswith("535") or outcome == "no STARTTLS offered"
    config = smtp_config(server, security=security, **({"username": "alertd"} if needs_auth else {}))
    before = socket_count()

    left_open = await attempt_and_count(
        server.port,
        lambda: deliver(
            make_message(), config, base_dir=Path(), password=PASSWORD, tls_context=client_tls_context
        ),
        expected,
    )

    assert [] == left_open
    assert wait_for(lambda: socket_count() == before, timeout=10), (before, socket_count())


async def test_a_silent_server_leaves_no_socket_open(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    config = DeliveryConfig(
        method="smtp", smtp=SmtpConfig(host=host, port=port, security="none", timeout=timedelta(seconds=0.5))
    )

    left_open = await attempt_and_count(
        port, lambda: deliver(make_message(), config, base_dir=Path()), TransientDeliveryError
    )

    assert [] == left_open


async def test_an_untrusted_certificate_leaves_no_socket_open(smtp_server_factory: ServerFactory) -> None:
    server = smtp_server_factory(starttls=True)
    config = smtp_config(server, security="starttls")  # the system trust store does not know the test CA

    left_open = await attempt_and_count(
        server.port, lambda: deliver(make_message(), config, base_dir=Path()), TransientDeliveryError
    )

    assert [] == left_open


def hold_data(server: SmtpServer) -> threading.Event:
    """Make the server sit on the final dot (it never answers DATA); the event is set once it has the data."""
    entered = threading.Event()

    async def hold(*args: Any) -> str:
        entered.set()
        await asyncio.sleep(3600)  # cancelled when the server stops
        return "250 never"

    server.handler.handle_DATA = hold  # type: ignore[method-assign]
    return entered


@pytest.mark.parametrize("server_kind", ["plain", "starttls", "tls"])
async def test_cancelling_an_attempt_mid_data_leaves_no_socket_open(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext, server_kind: str
) -> None:
    server = start(smtp_server_factory, server_kind)
    entered = hold_data(server)
    security = {"plain": "none", "starttls": "starttls", "tls": "tls"}[server_kind]
    config = smtp_config(server, security=security)
    sending = asyncio.create_task(
        deliver(make_message(), config, base_dir=Path(), tls_context=client_tls_context)
    )
    assert await asyncio.to_thread(entered.wait, 10), "the server never got the message"
    assert 1 == len(sockets_to(server.port))

    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending

    assert [] == sockets_to(server.port)


async def test_cancelling_twice_while_closing_still_closes(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext
) -> None:
    """A stop that cancels again while the TLS goodbye is under way aborts the connection at once."""
    server = start(smtp_server_factory, "tls")
    entered = hold_data(server)
    sending = asyncio.create_task(
        deliver(
            make_message(),
            smtp_config(server, security="tls"),
            base_dir=Path(),
            tls_context=client_tls_context,
        )
    )
    assert await asyncio.to_thread(entered.wait, 10)

    sending.cancel()
    await asyncio.sleep(0)  # the first cancellation reaches the client, which starts closing
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await asyncio.sleep(0)  # an aborted transport closes its socket on the next loop turn

    assert [] == sockets_to(server.port)


def conversation_config(server: SmtpServer) -> DeliveryConfig:
    return smtp_config(server, security="starttls")


@pytest.mark.parametrize("refuse", [False, True], ids=["accepted", "refused at MAIL"])
async def test_the_test_email_conversation_leaves_no_socket_open(
    smtp_server_factory: ServerFactory, client_tls_context: ssl.SSLContext, refuse: bool
) -> None:
    server = start(smtp_server_factory, "starttls")
    if refuse:
        server.handler.queue("MAIL", "550 5.7.1 sender rejected")
    message: EmailMessage = make_message()

    left_open = await attempt_and_count(
        server.port,
        lambda: smtp_conversation(
            message,
            conversation_config(server).smtp,
            password=None,
            echo=lambda line: None,
            tls_context=client_tls_context,
        ),
        PermanentDeliveryError if refuse else None,
    )

    assert [] == left_open


# --- the daemon over many deliveries ---------------------------------------------------------------------

DAEMON_WATCHLIST = '[[topic]]\nid = "chinese-ecommerce"\nname = "E-commerce chinois"\nany = ["Alibaba"]\n'
SUBSCRIBERS = 200


def answer_451_to_every_other_message(server: SmtpServer) -> list[str]:
    """Half the messages get 451 at the final dot; returns the replies given, in order."""
    original, replies = server.handler.handle_DATA, list[str]()

    async def alternate(smtp: Any, session: Any, envelope: Any) -> str:
        if len(replies) % 2:
            replies.append("451 4.3.0 try later")
            return replies[-1]
        replies.append(await original(smtp, session, envelope))
        return replies[-1]

    server.handler.handle_DATA = alternate  # type: ignore[method-assign]
    return replies


def daemon_config(tmp_path: Path, feeds: list[str], smtp_port: int) -> Path:
    (tmp_path / "watchlist.toml").write_text(DAEMON_WATCHLIST, encoding="utf-8")
    # Feed b's request is held until round one is over, which takes longer than the default 30 s fetch deadline
    # on a loaded machine (a poll that times out is retried only in an hour): the deadline outlasts the waits.
    lines = ['[poll]\nfirst_poll = "alert"\ninterval = "1h"\ntimeout = "10m"\n']
    lines += [f'[[feed]]\nname = "feed {i}"\nurl = "{url}"\n' for i, url in enumerate(feeds)]
    lines += [
        f'[[subscriber]]\nemail = "reader{i:03}@example.org"\nschedule = "immediate"\n'
        for i in range(SUBSCRIBERS)
    ]
    lines.append(
        f'[delivery]\nmethod = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
    )
    config = tmp_path / "alertd.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


@pytest.mark.slow
def test_the_daemons_file_descriptors_stay_flat_over_200_deliveries_half_refused(
    tmp_path: Path, feed_server: Any, smtp_server: SmtpServer
) -> None:
    from tests.feedserver import make_rss
    from tests.processes import spawn_daemon

    replies = answer_451_to_every_other_message(smtp_server)
    feed_server.route("/a.xml", make_rss([{"title": "Alibaba ouvre un bureau", "link": "https://x.test/a"}]))
    feed_server.route("/b.xml", make_rss([{"title": "Alibaba recrute", "link": "https://x.test/b"}]))
    second_round = feed_server.hold("/b.xml")
    config = daemon_config(tmp_path, [feed_server.url("/a.xml"), feed_server.url("/b.xml")], smtp_server.port)
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, log)
    daemon = psutil.Process(process.pid)
    try:
        # Round one (feed a) warms up everything the daemon opens once: parse workers, HTTP connections.
        assert wait_for(lambda: len(replies) == SUBSCRIBERS, timeout=120), log.read_text()
        assert wait_for(lambda: log.read_text().count("deferred:") == SUBSCRIBERS // 2, timeout=60)
        before = daemon.num_fds()

        second_round.set()  # feed b: 200 more attempts, half of them refused with 451
        assert wait_for(lambda: len(replies) == 2 * SUBSCRIBERS, timeout=120), log.read_text()
        assert wait_for(lambda: log.read_text().count("deferred:") == SUBSCRIBERS, timeout=60)
        after = daemon.num_fds()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert 2 * SUBSCRIBERS == len(replies)
    assert abs(after - before) <= 2, (before, after)
