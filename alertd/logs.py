"""Logging: one line per event on standard output, as text or JSON; journald adds timestamps itself."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

UTC = timezone.utc  # datetime.UTC is Python 3.11+

QUIET_LIBRARIES = ("httpx", "httpcore", "apscheduler", "aiosmtplib", "mail.log", "asyncio")
"""Libraries whose info-level chatter is not the operator's business: warnings and above only."""


class TextFormatter(logging.Formatter):
    """One line per event; multi-line messages (config errors) are indented under their first line."""

    def __init__(self, timestamps: bool) -> None:
        fmt = (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if timestamps
            else "%(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n    ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, log_format: str, environ: Mapping[str, str]) -> None:
    """One line per event on stdout; journald adds timestamps itself, so we don't when it is listening."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(timestamps="JOURNAL_STREAM" not in environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
