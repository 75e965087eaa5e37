"""Deliver a rendered message (I/O): to a local Maildir or mbox, or to an SMTP server via aiosmtplib.

Every failure becomes a :class:`~alertd.errors.DeliveryError` the outbox can act on (:mod:`alertd.outbox`
decides what each means): transient (4xx, timeout, connection lost or refused), permanent (5xx, unusable
mailbox path), or an SMTP setup error (no STARTTLS, no password, 535) that pauses sending.

SMTP security is explicit and fails closed: with ``security = "starttls"`` a server that does not offer
STARTTLS gets no AUTH and no message. The password is never logged or put in an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import itertools
import os
import re
import secrets
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib

from alertd.config import DeliveryConfig, SmtpConfig
from alertd.errors import (
    AuthDeliveryError,
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    SmtpSetupError,
    TransientDeliveryError,
)
from alertd.models import DeliveryReport

__all__ = ["deliver", "read_smtp_password", "smtp_conversation"]

_MAILDIR_COUNTER = itertools.count()
_MBOX_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_QUIT_TIMEOUT = 5.0
# How long a closing connection may take to say goodbye (TLS close_notify) before it is aborted.
_CLOSE_GRACE = 2.0


def _step_timeout(deadline: float) -> float:
    """aiosmtplib's own per-step timeout: a little under the overall deadline.

    When both expire together, the overall ``asyncio.wait_for`` cancels aiosmtplib in the middle of a step;
    letting aiosmtplib time out first gives the clearer error ("timed out waiting for the greeting"), and the
    overall deadline stays for a server that answers each step slowly. Sockets are closed either way
    (:func:`_connection`).
    """
    return max(deadline * 0.9, deadline - 1.0)


# Local write failures worth retrying (the disk may get space back); anything else is permanent.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EBUSY})


async def deliver(
    message: EmailMessage,
    config: DeliveryConfig,
    *,
    base_dir: Path,
    password: str | None = None,
    envelope_sender: str | None = None,
    recipients: Sequence[str] | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> DeliveryReport:
    """Deliver ``message`` with ``config.method``; raise a :class:`DeliveryError` subclass on failure.

    The envelope defaults to the message's From and To/Cc addresses. Relative mailbox paths are taken from
    ``base_dir``. ``tls_context`` replaces the system trust store for SMTP (certificates are always verified).
    """
    rcpts = tuple(recipients) if recipients is not None else _recipients_of(message)
    if not rcpts:
        raise PermanentDeliveryError((), "the message has no recipients")
    if config.method == "maildir":
        path = await asyncio.to_thread(_write_maildir, base_dir / config.maildir, message, rcpts)
        return _local_report("maildir", message, rcpts, path)
    if config.method == "mbox":
        path = await asyncio.to_thread(_append_mbox, base_dir / config.mbox, message, rcpts)
        return _local_report("mbox", message, rcpts, path)
    if config.method == "smtp":
        sender = envelope_sender or _sender_of(message) or parseaddr(config.sender)[1]
        return await _send_smtp(message, config.smtp, sender, rcpts, password, tls_context)
    raise PermanentDeliveryError(rcpts, f"unknown delivery method {config.method!r}")


def _local_report(method: str, message: EmailMessage, rcpts: tuple[str, ...], path: Path) -> DeliveryReport:
    return DeliveryReport(method, str(message["Message-ID"] or ""), rcpts, location=path)


def _recipients_of(message: EmailMessage) -> tuple[str, ...]:
    values = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return tuple(dict.fromkeys(addr for _, addr in getaddresses(values) if addr))


def _sender_of(message: EmailMessage) -> str | None:
    return parseaddr(str(message["From"] or ""))[1] or None


def _bytes_for_file(message: EmailMessage) -> bytes:
    """The message with LF line endings, as Maildir and mbox readers expect."""
    return message.as_bytes(policy=message.policy.clone(linesep="\n"))


# --- Maildir -----------------------------------------------------------------------------------


def _write_maildir(root: Path, message: EmailMessage, rcpts: Sequence[str]) -> Path:
    """Write into ``root/tmp``, fsync, then rename into ``root/new``: a reader never sees half a message."""
    try:
        for sub in (root, root / "tmp", root / "new", root / "cur"):
            _make_private_dir(sub)
        name = _maildir_name()
        tmp_path, new_path = root / "tmp" / name, root / "new" / name
        try:
            _write_synced(tmp_path, _bytes_for_file(message))
            tmp_path.rename(new_path)
        except OSError:
            tmp_path.unlink(missing_ok=True)
            raise
        _fsync_dir(root / "new")
    except OSError as exc:
        raise _file_error(exc, rcpts, f"cannot write to Maildir {root}") from exc
    return new_path


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_error(exc: OSError, rcpts: Sequence[str], what: str) -> DeliveryError:
    kind = TransientDeliveryError if exc.errno in _TRANSIENT_ERRNOS else PermanentDeliveryError
    return kind(rcpts, f"{what}: {exc.strerror or exc}")


def _make_private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _maildir_name() -> str:
    """A unique file name per the Maildir spec: time, microseconds, pid, counter, randomness, host."""
    now = time.time()
    seconds, micros = int(now), int((now % 1) * 1_000_000)
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    unique = f"M{micros}P{os.getpid()}Q{next(_MAILDIR_COUNTER)}R{secrets.token_hex(8)}"
    return f"{seconds}.{unique}.{host}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- mbox --------------------------------------------------------------------------------------


def _append_mbox(path: Path, message: EmailMessage, rcpts: Sequence[str]) -> Path:
    """Append one message (mboxrd quoting) under an exclusive fcntl lock, then fsync."""
    sender = _sender_of(message) or "MAILER-DAEMON"
    from_line = f"From {sender} {time.asctime(time.gmtime())}\n".encode("ascii", "replace")
    body = _MBOX_FROM_LINE.sub(rb">\1", _bytes_for_file(message)).rstrip(b"\n") + b"\n\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                _write_all(fd, _mbox_separator(fd) + from_line + body)
                os.fsync(fd)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _file_error(exc, rcpts, f"cannot append to mbox {path}") from exc
    return path


def _mbox_separator(fd: int) -> bytes:
    """Newlines needed so that the next "From " line follows a blank line (another writer may omit it)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    tail = os.pread(fd, 2, max(size - 2, 0))
    return b"" if tail.endswith(b"\n\n") or tail == b"\n" else (b"\n" if tail.endswith(b"\n") else b"\n\n")


# --- SMTP --------------------------------------------------------------------------------------


async def _send_smtp(
    message: EmailMessage,
    smtp: SmtpConfig,
    sender: str,
    rcpts: tuple[str, ...],
    password: str | None,
    tls_context: ssl.SSLContext | None,
) -> DeliveryReport:
    _check_smtp_security(smtp, password, rcpts)
    deadline = smtp.timeout.total_seconds()
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    async with _connection(smtp, tls_context, start_tls=smtp.security == "starttls") as client:
        try:
            refused, reply = await asyncio.wait_for(
                _smtp_transaction(client, smtp.username, password, sender, rcpts, data), deadline
            )
            # The message is accepted: a slow or failed goodbye must not turn that into a retry (a duplicate).
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(client.quit(), _QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise _classify(exc, rcpts, smtp) from exc
        except ValueError as exc:  # aiosmtplib refuses an address it cannot send safely (e.g. non-ASCII)
            raise PermanentDeliveryError(rcpts, f"smtp {smtp.host}:{smtp.port}: {exc}") from exc
    refused_map = {addr: (resp.code, resp.message) for addr, resp in refused.items()}
    accepted = tuple(r for r in rcpts if r not in refused_map)
    return DeliveryReport("smtp", str(message["Message-ID"] or ""), accepted, refused_map, smtp_reply=reply)


class _SmtpClient(aiosmtplib.SMTP):
    """aiosmtplib's client, remembering every transport it closes so that the attempt can wait for its socket.

    Closing a TLS transport only starts the TLS shutdown (close_notify both ways); its socket closes later,
    and a caller that stops running the loop first (a test, a daemon that exits) leaks it.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.closed_transports: list[asyncio.BaseTransport] = []

    def close(self) -> None:
        if self.transport is not None:
            self.closed_transports.append(self.transport)
        super().close()


@contextlib.asynccontextmanager
async def _connection(
    smtp: SmtpConfig, tls_context: ssl.SSLContext | None, *, start_tls: bool
) -> AsyncIterator[aiosmtplib.SMTP]:
    """An SMTP client whose sockets are all closed when the block ends, whatever its outcome.

    Accepted, refused, timed out, dropped or cancelled: on the way out the client is closed and each of its
    sockets waited for — the TLS goodbye gets :data:`_CLOSE_GRACE` seconds, then the connection is aborted. A
    second cancellation while waiting aborts at once. Sockets asyncio opened for a connection attempt that
    was cancelled are closed by asyncio on the next loop turn, which the wait includes.
    """
    client = _SmtpClient(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.security == "tls",
        start_tls=start_tls,
        validate_certs=True,
        tls_context=tls_context,
        timeout=_step_timeout(smtp.timeout.total_seconds()),
    )
    try:
        yield client
    finally:
        await _close(client)


async def _close(client: _SmtpClient) -> None:
    client.close()
    pending = [(t, s) for t in client.closed_transports if (s := t.get_extra_info("socket")) is not None]
    loop = asyncio.get_running_loop()
    give_up = loop.time() + _CLOSE_GRACE
    turns_after_abort = 0
    try:
        await asyncio.sleep(0)  # a plain TCP transport closes its socket on the next loop turn
        while (pending := [(t, s) for t, s in pending if s.fileno() != -1]) and turns_after_abort < 100:
            if loop.time() < give_up:
                await asyncio.sleep(0.01)
                continue
            _abort(pending)
            turns_after_abort += 1
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        _abort(pending)
        raise


def _abort(pending: Sequence[tuple[asyncio.BaseTransport, Any]]) -> None:
    for transport, _sock in pending:
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()


async def _smtp_transaction(
    client: aiosmtplib.SMTP,
    username: str | None,
    password: str | None,
    sender: str,
    rcpts: Sequence[str],
    data: bytes,
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    await client.connect()
    if username is not None and password is not None:
        await client.login(username, password)
    return await client.sendmail(sender, list(rcpts), data)


async def smtp_conversation(
    message: EmailMessage,
    smtp: SmtpConfig,
    *,
    password: str | None,
    echo: Callable[[str], None],
    tls_context: ssl.SSLContext | None = None,
) -> DeliveryReport:
    """Send ``message`` one SMTP step at a time, telling ``echo`` each command and the server's replies
    (``alertd test-email``). Same security rules and deadline as :func:`deliver`; the password is never echoed.
    """
    rcpts = _recipients_of(message)
    sender = _sender_of(message) or "alertd@localhost"
    _check_smtp_security(smtp, password, rcpts)
    deadline = smtp.timeout.total_seconds()

    def show(response: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPResponse:
        for line in (response.message or "").splitlines() or [""]:
            echo(f"<- {response.code} {line}".rstrip())
        return response

    async def converse(client: aiosmtplib.SMTP) -> tuple[dict[str, tuple[int, str]], str]:
        security = {"tls": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[smtp.security]
        echo(f"connecting to {smtp.host}:{smtp.port} ({security})")
        show(await client.connect())
        echo("-> EHLO")
        show(await client.ehlo())
        if smtp.security == "starttls":
            if not client.supports_extension("starttls"):
                raise SmtpSetupError(
                    rcpts, f"smtp {smtp.host}:{smtp.port}: the server does not offer STARTTLS; nothing sent"
                )
            echo("-> STARTTLS")
            show(await client.starttls())
            echo("-> EHLO")
            show(await client.ehlo())
        if smtp.username is not None and password is not None:
            echo(f"-> AUTH ({smtp.username}, password hidden)")
            show(await client.login(smtp.username, password))
        echo(f"-> MAIL FROM:<{sender}>")
        show(await client.mail(sender))
        refused: dict[str, tuple[int, str]] = {}
        for rcpt in rcpts:
            echo(f"-> RCPT TO:<{rcpt}>")
            try:
                show(await client.rcpt(rcpt))
            except aiosmtplib.SMTPRecipientRefused as exc:
                echo(f"<- {exc.code} {exc.message}")
                refused[rcpt] = (exc.code, exc.message)
        if len(refused) == len(rcpts):
            raise PermanentDeliveryError(rcpts, f"smtp {smtp.host}:{smtp.port}: every recipient refused")
        echo(f"-> DATA ({len(data)} bytes)")
        reply = show(await client.data(data))
        echo("-> QUIT")
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
            show(await asyncio.wait_for(client.quit(), _QUIT_TIMEOUT))
        return refused, f"{reply.code} {reply.message}"

    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    # STARTTLS is done by hand in converse(), so that each step can be shown.
    async with _connection(smtp, tls_context, start_tls=False) as client:
        try:
            refused, reply = await asyncio.wait_for(converse(client), deadline)
        except DeliveryError:
            raise
        except aiosmtplib.SMTPResponseException as exc:
            echo(f"<- {exc.code} {exc.message}")
            raise _classify(exc, rcpts, smtp) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise _classify(exc, rcpts, smtp) from exc
    accepted = tuple(r for r in rcpts if r not in refused)
    return DeliveryReport("smtp", str(message["Message-ID"] or ""), accepted, refused, smtp_reply=reply)


def _check_smtp_security(smtp: SmtpConfig, password: str | None, rcpts: Sequence[str]) -> None:
    """Refuse, before connecting, settings that would send credentials in clear or lack a password."""
    if smtp.security not in {"tls", "starttls", "none"}:
        raise SmtpSetupError(rcpts, f"unknown SMTP security {smtp.security!r}")
    if smtp.username is None:
        return
    if password is None:
        raise SmtpSetupError(rcpts, f"SMTP username {smtp.username!r} is set but no password was found")
    if smtp.security == "none" and not _is_loopback(smtp.host):
        raise SmtpSetupError(
            rcpts, f"refusing to send SMTP credentials to {smtp.host} without TLS (security = 'none')"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _classify(exc: BaseException, rcpts: Sequence[str], smtp: SmtpConfig) -> DeliveryError:
    """Map an aiosmtplib / socket failure to transient (retry) or permanent (do not)."""
    where = f"smtp {smtp.host}:{smtp.port}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or getattr(exc, "code", None) == 535:
        return AuthDeliveryError(rcpts, f"{where}: authentication failed: {_reply(exc)}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        kind = TransientDeliveryError if any(400 <= c < 500 for c in codes) else PermanentDeliveryError
        return kind(rcpts, f"{where}: every recipient refused: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = PermanentDeliveryError if 500 <= exc.code < 600 else TransientDeliveryError
        return kind(rcpts, f"{where}: {_reply(exc)}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TransientDeliveryError(rcpts, f"{where}: no answer within {smtp.timeout.total_seconds():g}s")
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError)):
        return TransientDeliveryError(rcpts, f"{where}: connection failed: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):  # STARTTLS or AUTH not offered: a setup problem
        return SmtpSetupError(rcpts, f"{where}: {exc.message}")
    return TransientDeliveryError(rcpts, f"{where}: {exc}")


def _reply(exc: BaseException) -> str:
    code, message = getattr(exc, "code", ""), getattr(exc, "message", str(exc))
    return f"{code} {message}".strip()


# --- credentials -------------------------------------------------------------------------------


def read_smtp_password(config: SmtpConfig, *, base_dir: Path, environ: Mapping[str, str]) -> str | None:
    """The SMTP password, from the first source present, or None.

    1. ``$CREDENTIALS_DIRECTORY/smtp_password`` (systemd ``LoadCredential=``);
    2. ``config.password_file`` (relative to ``base_dir``);
    3. ``$ALERTD_SMTP_PASSWORD``.

    Files readable by group or others (any bit of 0o077) are refused with a ConfigError. The password
    itself never appears in a message or log.
    """
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / "smtp_password"
        if path.exists():
            return _read_secret(path)
    if config.password_file is not None:
        return _read_secret(base_dir / config.password_file)
    return environ.get("ALERTD_SMTP_PASSWORD") or None


def _read_secret(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError.single(
                path,
                f"secret file mode is {mode:04o}; it must not be readable by group or others (chmod 600)",
                key="delivery.smtp.password_file",
            )
        secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(
            path, f"cannot read secret file: {type(exc).__name__}", key="delivery.smtp.password_file"
        ) from None
    if not secret:
        raise ConfigError.single(path, "secret file is empty", key="delivery.smtp.password_file")
    return secret
