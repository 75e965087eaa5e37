"""alertd as a real process, the way users and systemd run it: one place to start it and wait on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

# Variables of the developer's shell that would change what alertd does under test.
_SCRUBBED = ("ALERTD_CONFIG", "ALERTD_FAILPOINT", "JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def alertd(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run one ``alertd`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=environment(env),
        check=False,
    )


def spawn_daemon(config: Path, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``alertd run`` in the background, its output going to ``log``."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "alertd", "run", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment(env),
        )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` every 0.1 s until it holds or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()
