"""systemd's notify protocol: one datagram per state change on ``$NOTIFY_SOCKET`` (no dependency needed).

``READY=1`` once serving, ``STATUS=...`` a one-line summary, ``WATCHDOG=1`` while healthy, ``RELOADING=1`` and
``STOPPING=1`` around reloads and stops. Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("alertd.notify")


class Notifier:
    """Sends sd_notify messages; a no-op when the process was not started by systemd with ``Type=notify``."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        self._address = address or None
        self._socket: socket.socket | None = None
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if watchdog_usec.isdigit() and int(watchdog_usec) > 0 and watchdog_pid in ("", str(os.getpid())):
            self.watchdog_interval = int(watchdog_usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> None:
        """Send ``KEY=VALUE`` fields in one datagram; errors are logged, never raised (systemd may be gone)."""
        if self._address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self._address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (253+) with Type=notify-reload tell this reload from an earlier one.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
