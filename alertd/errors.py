"""alertd's exceptions: one root, named by what failed.

Hierarchy::

    AlertdError
    ├── ConfigError                 config or watchlist invalid (exit status 78)
    │   └── ConfigNotFoundError     no config named, none where alertd looks (names the places searched)
    ├── FetchError                  a feed could not be fetched (carries the feed URL and an error class)
    ├── ParseError                  fetched bytes are not a usable feed
    ├── StoreError                  the state database is unusable (wrong schema version, corrupt)
    │   └── StateWriteError         it cannot be written now (disk full, read-only, I/O error): retry later
    └── DeliveryError               a message could not be delivered (carries the recipients)
        ├── TransientDeliveryError  worth retrying later (4xx, timeout, connection refused)
        └── PermanentDeliveryError  retrying will not help (5xx, bad mailbox path)
            └── SmtpSetupError      the SMTP settings are wrong or unsafe: pause sending, alert the admin
                └── AuthDeliveryError   the server refused our credentials (535)

Errors carry the thing they are about (a path, a URL, recipients) and chain their cause
with ``raise ... from``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alertd.models import ErrorClass


class AlertdError(Exception):
    """Root of every error alertd raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a config or watchlist file, located as precisely as we can."""

    path: Path
    line: int
    col: int
    key: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        key = f" {self.key}:" if self.key else ""
        prefix = "" if self.severity == "error" else f" {self.severity}:"
        return f"{where}:{key}{prefix} {self.message}"


class ConfigError(AlertdError):
    """The configuration or the watchlist is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: Path, message: str, key: str = "", line: int = 1, col: int = 1) -> ConfigError:
        return cls([Problem(path, line, col, key, message)])


def did_you_mean(word: str, choices: Iterable[str], show: Callable[[str], str] = repr) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to a misspelt ``word`` (written by ``show``), ``""``
    when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {show(close[0])}?)" if close else ""


class ConfigNotFoundError(ConfigError):
    """No config file was named (``-c``, ``$ALERTD_CONFIG``) and none is where alertd looks for one."""

    def __init__(self, searched: Sequence[Path]) -> None:
        self.problems = ()
        self.searched = tuple(searched)
        places = ", ".join(str(path) for path in self.searched)
        AlertdError.__init__(
            self,
            f"alertd: no config file found (looked for {places}; $ALERTD_CONFIG is not set): pass -c FILE, "
            "or write a commented example with `alertd init DIR`",
        )


class FetchError(AlertdError):
    """A feed could not be fetched. ``error_class`` is a short stable name: timeout, http_5xx, tls_error..."""

    def __init__(self, url: str, error_class: ErrorClass, message: str) -> None:
        self.url = url
        self.error_class = error_class
        self.detail = message
        super().__init__(f"{url}: {error_class}: {message}")


class ParseError(AlertdError):
    """Fetched bytes could not be turned into feed entries."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.detail = message
        super().__init__(f"{url}: {message}")


class StoreError(AlertdError):
    """The state database cannot be used."""


class StateWriteError(StoreError):
    """The state database cannot be written now (disk full, read-only, I/O error); nothing was written."""


class DeliveryError(AlertdError):
    """A message could not be delivered."""

    def __init__(self, recipients: Sequence[str], message: str) -> None:
        self.recipients = tuple(recipients)
        super().__init__(f"{', '.join(self.recipients)}: {message}")


class TransientDeliveryError(DeliveryError):
    """Delivery failed in a way that may succeed later: retry with backoff."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed in a way that will not succeed by retrying."""


class SmtpSetupError(PermanentDeliveryError):
    """The SMTP settings are wrong or unsafe (no STARTTLS, no AUTH, no password): fix the config."""


class AuthDeliveryError(SmtpSetupError):
    """The SMTP server refused our credentials (535): a configuration error, not a per-message one."""
