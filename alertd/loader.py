"""Load everything a run needs from the config file: the config, its watchlist and its templates.

One entry point for every command and for the daemon's reloads, so that what ``check-config`` accepts is
exactly what the daemon runs. Any problem is a :class:`~alertd.errors.ConfigError` listing what is wrong in
the first file that has problems, each at ``PATH:LINE:COL``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from alertd.config import Config, load_config
from alertd.errors import ConfigError, ConfigNotFoundError
from alertd.render import check_templates, load_templates
from alertd.watchlist import Watchlist, load_watchlist

T = TypeVar("T")

CONFIG_SEARCH_PATH = tuple(
    map(Path, ("alertd.toml", "~/.config/alertd/alertd.toml", "/etc/alertd/alertd.toml"))
)
"""Where alertd looks for its config when neither ``-c`` nor ``$ALERTD_CONFIG`` names one, in this order."""


def find_config(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The config path: ``-c``, then ``$ALERTD_CONFIG``, then the first of ./alertd.toml, ~/.config/...,
    /etc/alertd/... that exists; :class:`ConfigNotFoundError` (naming them) when none does."""
    if explicit:
        return Path(explicit)
    if environ.get("ALERTD_CONFIG"):
        return Path(environ["ALERTD_CONFIG"])
    for candidate in CONFIG_SEARCH_PATH:
        path = candidate.expanduser()
        if path.exists():
            return path
    raise ConfigNotFoundError([candidate.expanduser() for candidate in CONFIG_SEARCH_PATH])


def load_all(config_path: Path) -> tuple[Config, Watchlist]:
    """Load the config, its watchlist and templates; raise ``ConfigError`` with every problem of the first
    file that has any (the config is read twice: first to find the watchlist, then to check subscribers'
    topics against it).

    Nothing else ever escapes: a file that exhausts the parser (RecursionError, MemoryError), cannot be read
    or decoded is a ConfigError at that file, so a reload keeps the last good configuration and
    ``check-config`` exits 78 with a message rather than a traceback.
    """
    config = _guarded(config_path, lambda: load_config(config_path))
    watchlist = _guarded(config.watchlist, lambda: load_watchlist(config.watchlist))
    topics = frozenset(topic.id for topic in watchlist.topics)
    config = _guarded(config_path, lambda: load_config(config_path, known_topics=topics))
    templates = config.templates_dir or config.path
    env = _guarded(templates, lambda: load_templates(config.templates_dir))
    problems = _guarded(templates, lambda: check_templates(env))
    if problems:
        raise ConfigError.single(templates, "template error: " + "; ".join(problems), key="templates_dir")
    return config, watchlist


def _guarded(path: Path, load: Callable[[], T]) -> T:
    try:
        return load()
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError.single(path, "nested too deep to be loaded") from None
    except MemoryError:
        raise ConfigError.single(path, "too large to be loaded (out of memory)") from None
    except UnicodeError as exc:
        raise ConfigError.single(path, f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError.single(path, f"cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # a bug on a hostile file must not take the daemon down: report it, keep running
        raise ConfigError.single(path, f"cannot be loaded: {type(exc).__name__}: {exc}") from exc


def watched_files(config: Config) -> list[Path]:
    """The files whose change on disk triggers a reload."""
    files = [config.path, config.watchlist]
    if config.feeds_file is not None:
        files.append(config.feeds_file)
    return files


def file_stamps(paths: Iterable[Path]) -> dict[Path, tuple[int, int] | None]:
    """Each file's (mtime in ns, size), None when it does not exist."""
    stamps: dict[Path, tuple[int, int] | None] = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamps[path] = None
        else:
            stamps[path] = (stat.st_mtime_ns, stat.st_size)
    return stamps
