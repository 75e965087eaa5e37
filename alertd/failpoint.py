"""Named fail points for crash tests: ``ALERTD_FAILPOINT=name`` makes the process SIGKILL itself there.

``stall_loop`` instead blocks the event loop for ``STALL_SECONDS`` a few seconds after start, so tests can
watch the systemd watchdog go quiet; ``state_full`` makes every state write fail while the file named by
``$ALERTD_STATE_FULL_FLAG`` exists, as on a full disk. A fail point marks an instant where a crash must lose nothing (between a side effect and the write that
records it, inside a transaction, ...). Tests run alertd as a subprocess with the variable set, then restart
it and check that no match was lost and at most one message was repeated. Unset, a fail point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

STALL_SECONDS = 6.0
STATE_FULL_FLAG = "ALERTD_STATE_FULL_FLAG"
"""With the ``state_full`` fail point armed: the file whose existence makes every state write fail."""

POINTS = (
    "mid_migration",
    "after_fetch_before_commit",
    "after_poll_commit",
    "before_outbox_commit",
    "after_outbox_commit",
    "before_delivery",
    "after_delivery_before_mark_sent",
    "after_mark_sent",
)
"""Points where the process kills itself (``failpoint(name)``)."""
BEHAVIOURS = ("stall_loop", "state_full")
"""Fail points that make the process misbehave instead of dying (``armed(name)``)."""


def armed(name: str) -> bool:
    """Whether ``$ALERTD_FAILPOINT`` names this point (for fail points that do more than die)."""
    assert name in POINTS or name in BEHAVIOURS, name
    return name in os.environ.get("ALERTD_FAILPOINT", "").split(",")


def failpoint(name: str) -> None:
    """Die here, as abruptly as a power cut, if ``$ALERTD_FAILPOINT`` names this point."""
    if armed(name):
        os.kill(os.getpid(), signal.SIGKILL)


def state_full() -> bool:
    """``state_full`` armed and its flag file (``$ALERTD_STATE_FULL_FLAG``) present: writes fail as on a full
    disk (for tests on machines where a small tmpfs cannot be mounted)."""
    if not armed("state_full"):
        return False
    flag = os.environ.get(STATE_FULL_FLAG, "")
    return bool(flag) and os.path.exists(flag)  # noqa: PTH110 - a stat per write, only under the fail point
