"""systemd integration: the unit files, MemoryDenyWriteExecute, and the sd_notify conversation."""

from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.feedserver import FeedServer, make_rss
from tests.processes import spawn_daemon

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "alertd.service"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


@needs_systemd_analyze
def test_system_unit_exposure_is_at_most_1_5() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=15", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level for alertd.service" in result.stdout


@needs_systemd_analyze
def test_system_unit_verifies_but_for_the_missing_binary() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, check=False
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert [line for line in lines if "/usr/local/bin/alertd" not in line] == []


def test_units_keep_the_contract() -> None:
    text = UNIT.read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=alertd",
        "ConfigurationDirectory=alertd",
        "LoadCredential=smtp_password:/etc/alertd/smtp_password",
        "RestartPreventExitStatus=78",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
    ):
        assert directive in text
    user = (REPO / "systemd" / "alertd-user.service").read_text()
    assert "Type=notify" in user and "WantedBy=default.target" in user


MDWE_SMOKE = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("MDWE-UNSUPPORTED"); sys.exit(0)
    import mmap
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        pass
    else:
        print("MDWE-NOT-ENFORCED"); sys.exit(0)
    import asyncio, ssl, sqlite3, zoneinfo
    import feedparser, httpx, jinja2, aiosmtplib, apscheduler.schedulers.asyncio, re2
    import alertd.cli, alertd.service
    from alertd.parse import ParserPool
    from alertd.render import load_templates, check_templates
    doc = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Alibaba</title>'\\
          b'<link>https://example.org/a</link></item></channel></rss>'
    async def main():
        with ParserPool(max_workers=1) as pool:
            parsed = await pool.parse(doc, None, "https://example.org/feed")
        assert parsed.entries[0].title == "Alibaba"
    asyncio.run(main())
    assert check_templates(load_templates(None)) == []
    ssl.create_default_context()
    print("MDWE-OK")
    """
)


def test_cpython_and_every_dependency_run_under_memory_deny_write_execute() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MDWE_SMOKE], capture_output=True, text=True, timeout=120, check=False
    )
    if "MDWE-UNSUPPORTED" in result.stdout:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert "MDWE-NOT-ENFORCED" not in result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MDWE-OK" in result.stdout


# --- sd_notify -------------------------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def receive_until(sock: socket.socket, wanted: str, seen: list[str], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(wanted in message for message in seen):
            return True
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return any(wanted in message for message in seen)


def test_daemon_speaks_sd_notify(
    tmp_path: Path, feed_server: FeedServer, notify_socket: socket.socket
) -> None:
    feed_server.route(
        "/feed.xml", make_rss([{"title": "Temu s'installe en France", "link": "https://example.org/t"}])
    )
    (tmp_path / "watchlist.toml").write_text(
        '[[topic]]\nid = "t"\nname = "T"\nany = ["Temu"]\n', encoding="utf-8"
    )
    config = tmp_path / "alertd.toml"
    config.write_text(
        f'[[feed]]\nurl = "{feed_server.url("/feed.xml")}"\n[[subscriber]]\nemail = "a@example.org"\nschedule = "immediate"\n',
        encoding="utf-8",
    )
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "2000000"}
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, log, env)
    seen: list[str] = []
    try:
        assert receive_until(notify_socket, "READY=1", seen), log.read_text()
        ready = next(m for m in seen if "READY=1" in m)
        assert "STATUS=1/1 feeds ok, 0 failing" in ready
        assert receive_until(notify_socket, "WATCHDOG=1", seen), log.read_text()
        process.send_signal(signal.SIGHUP)
        assert receive_until(notify_socket, "RELOADING=1", seen), log.read_text()
        process.send_signal(signal.SIGTERM)
        assert receive_until(notify_socket, "STOPPING=1", seen), log.read_text()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    order = [
        next(i for i, m in enumerate(seen) if key in m) for key in ("READY=1", "RELOADING=1", "STOPPING=1")
    ]
    assert order == sorted(order)


def test_a_stalled_event_loop_stops_the_watchdog(tmp_path: Path, notify_socket: socket.socket) -> None:
    """While the loop is blocked (fail point ``stall_loop``) no WATCHDOG=1 is sent; after, they resume."""
    (tmp_path / "watchlist.toml").write_text(
        '[[topic]]\nid = "t"\nname = "T"\nany = ["Temu"]\n', encoding="utf-8"
    )
    config = tmp_path / "alertd.toml"
    config.write_text('[[subscriber]]\nemail = "a@example.org"\nschedule = "immediate"\n', encoding="utf-8")
    env = {
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": "1000000",
        "ALERTD_FAILPOINT": "stall_loop",
    }
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, log, env)
    pings: list[float] = []
    seen: list[str] = []
    try:
        assert receive_until(notify_socket, "READY=1", seen), log.read_text()
        deadline = time.monotonic() + 14
        while time.monotonic() < deadline:
            try:
                message = notify_socket.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in message:
                pings.append(time.monotonic())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert pings, log.read_text()
    assert max(gaps) >= 5.0, gaps  # the 6 s stall: silence
    assert sorted(gaps)[len(gaps) // 2] <= 1.0, gaps  # otherwise every half interval
    assert pings[-1] - pings[0] > 8.0  # and they resumed after the stall
