"""pytest plugin: real SMTP servers on 127.0.0.1 for delivery tests, with scripted replies and a session log.

Fixtures (all synchronous, so they serve async tests and sync tests that run alertd as a subprocess alike):

- ``smtp_server``: a plain aiosmtpd server (no TLS), AUTH allowed in clear for loopback tests;
- ``smtp_server_factory``: build more with options (STARTTLS or implicit TLS with a trustme CA);
- ``silent_server``: a raw TCP server that accepts connections and never says a word (deadline tests);
- ``tls_ca``: a trustme CA; ``client_tls_context`` trusts it.

The servers are aiosmtpd's ``SMTP`` protocol on an event loop in a background thread, like aiosmtpd's
``Controller``, but bound to port 0: the 1.4.x Controller probes readiness by connecting to the configured
port, so it cannot bind port 0. Teardown closes every connection and cancels every server task, so no
ResourceWarning or "task destroyed" noise escapes (``filterwarnings = error``). These are hand-written fakes
of the *server*; alertd's client code runs for real.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import MISSING, AuthResult, Envelope, LoginPassword, Session
from aiosmtpd.smtp import SMTP as SMTPProtocol

HOST = "127.0.0.1"
SERVER_NAME = "smtp.test"  # given explicitly so aiosmtpd never calls socket.getfqdn() (a DNS lookup)
DROP = "<drop>"  # a scripted reply that closes the connection instead of answering


@dataclass(frozen=True)
class RecordedEnvelope:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class ScriptedHandler:
    """aiosmtpd handler whose replies are programmed per phase, and which records what it accepted.

    ``script[phase]`` is a queue of replies used once each, in order (``"451 4.3.0 try later"``, or
    :data:`DROP`); when a queue is empty the phase behaves normally. ``rcpt_replies`` answers RCPT for given
    addresses every time (partial refusal). ``credentials`` are the (user, password) pairs AUTH accepts.
    """

    script: dict[str, deque[str]] = field(default_factory=dict)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    credentials: set[tuple[str, str]] = field(default_factory=set)
    envelopes: list[RecordedEnvelope] = field(default_factory=list)

    def queue(self, phase: str, *replies: str) -> None:
        """Answer the next ``len(replies)`` commands of ``phase`` (EHLO, MAIL, RCPT, DATA, AUTH) with these."""
        self.script.setdefault(phase.upper(), deque()).extend(replies)

    def _scripted(self, phase: str) -> str | None:
        replies = self.script.get(phase)
        return replies.popleft() if replies else None

    async def handle_EHLO(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        reply = self._scripted("EHLO")
        if reply is None:
            session.host_name = hostname
            return responses
        return [_maybe_drop(server, reply)]

    async def handle_MAIL(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._scripted("MAIL")
        if reply is not None:
            return _maybe_drop(server, reply)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._scripted("RCPT") or self.rcpt_replies.get(address)
        if reply is not None:
            return _maybe_drop(server, reply)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        reply = self._scripted("DATA")
        if reply is not None:
            return _maybe_drop(server, reply)
        content = envelope.original_content or b""
        self.envelopes.append(RecordedEnvelope(envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 2.0.0 OK queued as 42"

    async def handle_AUTH(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        reply = self._scripted("AUTH")
        return MISSING if reply is None else _maybe_drop(server, reply)

    def authenticate(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd authenticator: accept only the configured credentials."""
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            in self.credentials
        )
        return AuthResult(success=ok, handled=False)


def _maybe_drop(server: SMTPProtocol, reply: str) -> str:
    if reply == DROP:
        assert isinstance(server.transport, asyncio.Transport)
        server.transport.abort()  # the reply below is never delivered: the client sees the connection drop
        return "421 4.4.2 connection dropped"
    return reply


class RecordingSMTP(SMTPProtocol):
    """aiosmtpd's SMTP protocol, plus a log of every command received (``"AUTH PLAIN"``, ``"STARTTLS"``...)."""

    def __init__(self, handler: ScriptedHandler, session_log: list[str], **kwargs: Any) -> None:
        super().__init__(handler, authenticator=handler.authenticate, hostname=SERVER_NAME, **kwargs)
        self._session_log = session_log
        self._smtp_methods = {
            name: self._recorded(name, method) for name, method in self._smtp_methods.items()
        }

    def _recorded(self, name: str, method: Callable[[str | None], Awaitable[None]]) -> Callable[..., Any]:
        async def record(arg: str | None) -> None:
            self._session_log.append(name if not arg or name == "AUTH" else f"{name} {arg}")
            await method(arg)

        return record


class ServerThread:
    """An event loop in a daemon thread, hosting test servers; ``stop()`` tears everything down cleanly."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.protocols: list[RecordingSMTP] = []
        self.servers: list[asyncio.AbstractServer] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._release: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-smtp", daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the server loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _shutdown(self) -> None:
        for server in self.servers:
            server.close()
        for protocol in self.protocols:
            # Abort rather than close: closing a TLS transport waits for the client's close_notify, and a
            # loop stopped before that leaves the socket open.
            for transport in (protocol.transport, protocol._original_transport):
                if isinstance(transport, asyncio.WriteTransport):
                    transport.abort()
        if self._release is not None:
            self._release.set()  # silent-server handlers return on their own rather than being cancelled
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()

    def start_smtp(self, handler: ScriptedHandler, commands: list[str], **options: Any) -> tuple[Any, int]:
        return self.call(self._start_smtp(handler, commands, **options))  # type: ignore[no-any-return]

    async def _start_smtp(
        self,
        handler: ScriptedHandler,
        commands: list[str],
        *,
        server_context: ssl.SSLContext | None,
        starttls: bool,
        auth_require_tls: bool,
    ) -> tuple[asyncio.AbstractServer, int]:
        def protocol() -> RecordingSMTP:
            smtp = RecordingSMTP(
                handler,
                commands,
                tls_context=server_context if starttls else None,
                auth_require_tls=auth_require_tls,
                loop=self.loop,
            )
            self.protocols.append(smtp)
            return smtp

        implicit = server_context if not starttls else None
        server = await self.loop.create_server(protocol, HOST, 0, ssl=implicit)
        self.servers.append(server)
        return server, server.sockets[0].getsockname()[1]

    def start_silent(self) -> int:
        return self.call(self._start_silent())  # type: ignore[no-any-return]

    async def _start_silent(self) -> int:
        release = self._release = self._release or asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            await release.wait()  # never greet; released at shutdown

        server = await asyncio.start_server(hold, HOST, 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])


@dataclass
class SmtpServer:
    """A running test SMTP server: where it listens, what it was told to answer, what it saw."""

    host: str
    port: int
    handler: ScriptedHandler
    commands: list[str]
    server: asyncio.AbstractServer
    thread: ServerThread

    @property
    def envelopes(self) -> list[RecordedEnvelope]:
        """Messages accepted, in order."""
        return self.handler.envelopes

    @property
    def messages(self) -> list[RecordedEnvelope]:
        """Alias of :attr:`envelopes`."""
        return self.handler.envelopes

    def saw(self, command: str) -> bool:
        """Whether any command line starting with ``command`` (e.g. ``"AUTH"``) was received."""
        return any(line.split(" ", 1)[0] == command.upper() for line in self.commands)

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused."""

        async def close() -> None:
            self.server.close()

        self.thread.call(close())


ServerFactory = Callable[..., SmtpServer]


@pytest.fixture
def tls_ca() -> trustme.CA:
    """A throwaway CA; the server certificate it issues is valid for 127.0.0.1 and localhost."""
    return trustme.CA()


@pytest.fixture
def client_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts only ``tls_ca``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def server_thread() -> Iterator[ServerThread]:
    """The background loop hosting this test's servers."""
    thread = ServerThread()
    yield thread
    thread.stop()


@pytest.fixture
def smtp_server_factory(server_thread: ServerThread, tls_ca: trustme.CA) -> ServerFactory:
    """Start SMTP servers: ``factory(starttls=True)``, ``factory(implicit_tls=True)``, ``auth_require_tls``."""

    def start(
        *, starttls: bool = False, implicit_tls: bool = False, auth_require_tls: bool = False
    ) -> SmtpServer:
        handler, commands = ScriptedHandler(), list[str]()
        server_context = _server_context(tls_ca) if (starttls or implicit_tls) else None
        server, port = server_thread.start_smtp(
            handler,
            commands,
            server_context=server_context,
            starttls=starttls,
            auth_require_tls=auth_require_tls,
        )
        return SmtpServer(HOST, port, handler, commands, server, server_thread)

    return start


@pytest.fixture
def smtp_server(smtp_server_factory: ServerFactory) -> SmtpServer:
    """A plain SMTP server on 127.0.0.1 (no TLS; AUTH accepted in clear since it is loopback)."""
    return smtp_server_factory()


@pytest.fixture
def silent_server(server_thread: ServerThread) -> tuple[str, int]:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a greeting."""
    return HOST, server_thread.start_silent()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(context)
    return context
