"""The ``alertd`` commands, one module per family; what they share lives here.

Exit status: 0 ok, 1 runtime failure (a feed or a delivery failed), 2 usage, 78 configuration error.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

from alertd.config import Config, SubscriberConfig
from alertd.schedule import format_moment
from alertd.watchlist import Watchlist

UTC = timezone.utc  # datetime.UTC is Python 3.11+

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE: the reader of standard output went away


def config_path(args: argparse.Namespace) -> Path:
    from alertd.loader import find_config

    return find_config(args.config, os.environ)


def load(args: argparse.Namespace) -> tuple[Config, Watchlist]:
    """The config, its watchlist and templates (:func:`alertd.loader.load_all`)."""
    from alertd.loader import load_all

    return load_all(config_path(args))


def now() -> datetime:
    return datetime.now(UTC)


def local(moment: datetime, *, seconds: bool = False) -> str:
    """``moment`` in the system's local zone, named (:func:`alertd.schedule.format_moment`)."""
    return format_moment(moment, seconds=seconds)


def subscriber_of(config: Config, email: str | None) -> SubscriberConfig | None:
    """The configured subscriber with this address (any case), the first one for None, else None."""
    if email is None:
        return config.subscribers[0] if config.subscribers else None
    return next((s for s in config.subscribers if s.email.casefold() == email.casefold()), None)
