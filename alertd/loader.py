"""Load everything a run needs from the config file: the config, its watchlist and its templates.

One entry point for every command and for the daemon's reloads, so that what ``check-config`` accepts is
exactly what the daemon runs. Any problem is a :class:`~alertd.errors.ConfigError` listing what is wrong in
the first file that has problems, each at ``PATH:LINE:COL``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alertd.config import Config, load_config
from alertd.errors import ConfigError
from alertd.render import check_templates, load_templates
from alertd.watchlist import Watchlist, load_watchlist


def load_all(config_path: Path) -> tuple[Config, Watchlist]:
    """Load the config, its watchlist and templates; raise ``ConfigError`` with every problem of the first
    file that has any (the config is read twice: first to find the watchlist, then to check subscribers'
    topics against it)."""
    config = load_config(config_path)
    watchlist = load_watchlist(config.watchlist)
    topics = frozenset(topic.id for topic in watchlist.topics)
    config = load_config(config_path, known_topics=topics)
    env = load_templates(config.templates_dir)
    problems = check_templates(env)
    if problems:
        target = config.templates_dir or config.path
        raise ConfigError.single(target, "template error: " + "; ".join(problems), key="templates_dir")
    return config, watchlist


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
