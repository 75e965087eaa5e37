"""The tool-managed feeds file (``feeds_file`` in the config): add, remove, pause and resume a feed in it,
keeping everything else of the file — other feeds, their order, comments — as it was (pure: text in, text out).

The file is TOML, one ``[[feed]]`` table per feed, as ``alertd feeds import`` and ``alertd feeds add`` write
it; a person may edit it too. A feed's *block* runs from its ``[[feed]]`` line to the next one (or the end):
removing a feed removes its block, pausing it writes ``paused = true`` into its block, resuming removes that.
The commands write the result atomically and load the whole config again before keeping it
(:mod:`alertd.commands.feeds`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from alertd.opml import FEEDS_FILE_HEADER, OpmlFeed, toml_feed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Block", "add", "blocks", "remove", "set_paused"]

_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*feed[ \t]*\]\][ \t]*(?:#.*)?$", re.MULTILINE)
_PAUSED = re.compile(r"^[ \t]*paused[ \t]*=.*\n?", re.MULTILINE)
_URL_LINE = re.compile(r"^[ \t]*url[ \t]*=.*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Block:
    """One ``[[feed]]`` table of the file: where its text is, and the URL it names."""

    start: int
    end: int
    url: str | None
    """None when the block does not read as a feed with a URL (a hand edit): it is never touched."""


def blocks(text: str) -> list[Block]:
    """The feed blocks of ``text``, in file order. A block ends where the comments (and blank lines) written
    just above the next ``[[feed]]`` begin: those describe the next feed and stay with it."""
    starts = [found.start() for found in _HEADER.finditer(text)]
    found = []
    for start, next_start in zip(starts, [*starts[1:], len(text)][: len(starts)], strict=True):
        end = next_start if next_start == len(text) else _before_leading_comments(text, start, next_start)
        found.append(Block(start, end, _url_of(text[start:end])))
    return found


def _before_leading_comments(text: str, start: int, header: int) -> int:
    """Where the run of comment and blank lines just above the header at ``header`` begins (not before the
    end of the line at ``start``)."""
    end = header
    while end > start:
        line_start = text.rfind("\n", start, end - 1) + 1
        line = text[line_start:end].strip()
        if line and not line.startswith("#"):
            break
        if line_start <= start:
            break
        end = line_start
    return end


def add(text: str | None, feed: OpmlFeed, *, interval: str | None = None, paused: bool = False) -> str:
    """``text`` (None: a new file) with ``feed`` appended as one more ``[[feed]]`` table."""
    old = text if text is not None else FEEDS_FILE_HEADER
    table = toml_feed(feed)
    if interval is not None:
        table += f'interval = "{interval}"\n'
    if paused:
        table += "paused = true\n"
    return old + ("" if old.endswith("\n") else "\n") + "\n" + table


def remove(text: str, url: str) -> str | None:
    """``text`` without the block of ``url``; None when no block names it."""
    block = _block_of(text, url)
    if block is None:
        return None
    return text[: block.start] + text[block.end :]


def set_paused(text: str, url: str, paused: bool) -> str | None:
    """``text`` with ``url``'s block paused (``paused = true`` after its URL) or resumed (the line removed);
    None when no block names it."""
    block = _block_of(text, url)
    if block is None:
        return None
    body = _PAUSED.sub("", text[block.start : block.end])
    if paused:
        line = _URL_LINE.search(body)
        at = line.end() if line is not None else body.index("\n") if "\n" in body else len(body)
        body = body[:at] + "\npaused = true" + body[at:]
    return text[: block.start] + body + text[block.end :]


def feed_urls(text: str) -> Sequence[str]:
    """The URLs of the feeds the file holds."""
    return [block.url for block in blocks(text) if block.url is not None]


def _block_of(text: str, url: str) -> Block | None:
    return next((block for block in blocks(text) if block.url == url), None)


def _url_of(block: str) -> str | None:
    try:
        tables = tomllib.loads(block).get("feed")
    except tomllib.TOMLDecodeError:
        return None
    if isinstance(tables, list) and len(tables) == 1 and isinstance(tables[0], dict):
        url = tables[0].get("url")
        return url if isinstance(url, str) else None
    return None
