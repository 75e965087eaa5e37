"""``alertd init``: a commented example config and watchlist to start from."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from alertd.commands import EXIT_FAILURE, EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    source = example_config_dir()
    target: Path = args.directory
    target.mkdir(parents=True, exist_ok=True)
    for name in ("alertd.toml", "watchlist.toml"):
        destination = target / name
        if destination.exists() and not args.force:
            print(f"alertd: {destination} exists (use --force to overwrite)", file=sys.stderr)
            return EXIT_FAILURE
        shutil.copyfile(source / name, destination)
        print(f"wrote {destination}")
    print(f"next: edit {target / 'alertd.toml'}, then: alertd check-config -c {target / 'alertd.toml'}")
    return EXIT_OK


def example_config_dir() -> Path:
    """The shipped example config: inside the installed wheel, or the repository's ``config/``."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "example_config"
    if packaged.is_dir():
        return packaged
    return package.parent / "config"
