"""One daemon per state: an exclusive lock on a file beside the database, held for the life of the process.

``alertd run`` (the daemon, and ``run --once``) takes it before anything else and keeps it until it exits; a
second one on the same state exits at once, saying which process holds it. The kernel releases the lock when
the process dies, however it dies, so ``alertd status`` tells a running daemon from a stopped one by probing
the lock: a pid file would lie after a crash.

The lock file holds the holder's pid and what it is doing, for the message of whoever finds it taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from alertd.errors import AlertdError


class StateLocked(AlertdError):
    """Another alertd process holds the state lock."""

    def __init__(self, state_path: Path, holder: str) -> None:
        self.state_path = state_path
        self.holder = holder
        super().__init__(f"another alertd ({holder}) is running on {state_path}")


def lock_path(state_path: Path) -> Path:
    """The lock file of a state database: beside it, named after it."""
    return state_path.with_name(state_path.name + ".lock")


@dataclass
class StateLock:
    """The held lock; release it with :meth:`release` or by leaving its ``with`` block."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, state_path: Path, purpose: str) -> StateLock:
        """Take the lock of ``state_path`` for this process (``purpose``: "daemon", "run --once"), or raise
        :class:`StateLocked` naming the holder."""
        path = lock_path(state_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 256, 0))
            os.close(fd)
            raise StateLocked(state_path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {purpose}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = -1

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a state's lock, as seen from another process."""

    pid: int | None
    purpose: str


def holder(state_path: Path) -> Holder | None:
    """The process holding the lock of ``state_path``, or None when none does (read-only: takes nothing).

    Raises ``PermissionError`` when this user may not open the lock file (another user's service).
    """
    try:
        fd = os.open(lock_path(state_path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, purpose = os.pread(fd, 256, 0).decode("utf-8", "replace").strip().partition(" ")
            return Holder(int(pid) if pid.isdigit() else None, purpose or "alertd")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(content: bytes) -> str:
    pid, _, purpose = content.decode("utf-8", "replace").strip().partition(" ")
    return f"pid {pid}, {purpose}" if pid.isdigit() else "a process that did not say which"
