"""TOML files with positions: the parsed data plus the line and column of every key and value.

``tomllib`` returns plain data without positions, yet every config or watchlist error must be reported as
``PATH:LINE:COL``. This module parses the file with ``tomllib`` (the authority on what is valid TOML) and then
walks the source with a small scanner that records where each key path starts. The scanner only has to be
right on files ``tomllib`` accepted.

A key path is a tuple such as ``("feed", 2, "url")`` (the third ``[[feed]]`` table's ``url``) or
``("topic", 0, "any", 3)`` (the fourth element of the first topic's ``any`` array).

Whatever the file holds, loading it raises nothing but :class:`ConfigError`: bytes that are not UTF-8 are
reported at the first bad byte, and tables and arrays nested deeper than :data:`MAX_NESTING` levels are refused
by a linear scan *before* tomllib sees them (tomllib recurses on nested arrays and inline tables and would
raise ``RecursionError``; it also slows down quadratically on very long dotted keys).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alertd.errors import ConfigError
from alertd.tomldepth import BARE_KEY, MAX_NESTING, escaped, measure_nesting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

# Levels of tables and arrays below the top-level table. Real files use a handful (a watchlist term is 4 deep:
# topic array, topic table, any array, term table); 32 leaves room and keeps every recursive walk of the data,
# tomllib's included, a few hundred frames deep at most.

_TOMLLIB_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class TomlDocument:
    """A parsed TOML file and where each key path sits in it."""

    path: Path
    data: dict[str, Any]
    positions: Mapping[KeyPath, tuple[int, int]] = field(repr=False)
    text: str = field(default="", repr=False)  # the source, for positions inside string values

    def locate(self, key: KeyPath) -> tuple[int, int]:
        """Line and column (1-based) of ``key``, or of its nearest located ancestor."""
        for end in range(len(key), 0, -1):
            found = self.positions.get(key[:end])
            if found is not None:
                return found
        return (1, 1)


def load(path: Path) -> TomlDocument:
    """Read and parse ``path``; any problem with its content becomes a positioned ``ConfigError``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError.single(path, "file not found") from exc
    except OSError as exc:
        raise ConfigError.single(path, f"cannot read: {exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, raw, exc) from exc
    # As Path.read_text does: universal newlines.
    return loads(text.replace("\r\n", "\n").replace("\r", "\n"), path)


def _not_utf8(path: Path, raw: bytes, exc: UnicodeDecodeError) -> ConfigError:
    """The first byte that is not UTF-8, by byte offset and by line and column (in characters)."""
    before = raw[: exc.start].decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    message = (
        f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} cannot be decoded "
        f"({exc.reason}); save the file as UTF-8"
    )
    return ConfigError.single(path, message, line=line, col=col)


def loads(text: str, path: Path) -> TomlDocument:
    """Parse ``text`` (the content of ``path``) into a positioned document; raise only ``ConfigError``."""
    _refuse_deep_nesting(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, col = 1, 1
        found = _TOMLLIB_POSITION.search(message)
        if found:
            line, col = int(found.group(1)), int(found.group(2))
            message = _TOMLLIB_POSITION.sub("", message).strip()
        raise ConfigError.single(path, f"invalid TOML: {message}", line=line, col=col) from exc
    except RecursionError as exc:  # a second line of defence: the nesting scan refuses such files first
        message = f"invalid TOML: nested too deep to parse; at most {MAX_NESTING} levels are allowed"
        raise ConfigError.single(path, message) from exc
    except ValueError as exc:  # an integer with more digits than int() accepts
        raise _bad_value(path, text, exc) from exc
    return TomlDocument(path, data, _Scanner(text).scan(), text)


_LONG_NUMBER = re.compile(r"[0-9A-Fa-f_]{1000,}")


def _bad_value(path: Path, text: str, exc: ValueError) -> ConfigError:
    """A value tomllib lexed but Python refused to build: in practice an integer too long to convert."""
    found = _LONG_NUMBER.search(text)
    line, col = (1, 1) if found is None else _line_col(text, found.start())
    if "digits" in str(exc):
        message = (
            f"invalid TOML: integer too long (Python converts at most {sys.get_int_max_str_digits()} digits)"
        )
    else:  # pragma: no cover - no other ValueError is known to escape tomllib
        message = f"invalid TOML: {exc}"
    return ConfigError.single(path, message, line=line, col=col)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def string_offset(text: str, start: int, quote: str, offset: int) -> int:
    """Offset in ``text`` of character ``offset`` of the string value whose content starts at ``start``,
    just after its opening ``quote``: in a basic string an escape (``\\\\``, ``\\u00e9``) is several source
    characters for one character of the value, and a line-ending backslash is none."""
    if quote.startswith("'"):
        return start + offset
    position, produced = start, 0
    while produced < offset and position < len(text):
        if text[position] != "\\":
            position, produced = position + 1, produced + 1
            continue
        trimmed = _LINE_ENDING_BACKSLASH.match(text, position) if quote == '"""' else None
        if trimmed is not None:
            position = trimmed.end()
            continue
        position += {"u": 6, "U": 10}.get(text[position + 1 : position + 2], 2)
        produced += 1
    return position


_LINE_ENDING_BACKSLASH = re.compile(r"\\[ \t]*\n\s*")


def _refuse_deep_nesting(text: str, path: Path) -> None:
    nesting = measure_nesting(text)
    if nesting.first_too_deep is not None:
        line, col = _line_col(text, nesting.first_too_deep)
        message = (
            f"nested {nesting.deepest} deep; at most {MAX_NESTING} levels of tables and arrays are allowed"
        )
        raise ConfigError.single(path, message, line=line, col=col)


class _Scanner:
    """Walks TOML source that tomllib already accepted and records the position of each key path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.positions: dict[KeyPath, tuple[int, int]] = {}
        self.array_counts: dict[tuple[str, ...], int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def scan(self) -> dict[KeyPath, tuple[int, int]]:
        table: KeyPath = ()
        while self._skip_blank_and_comments():
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                start = self.pos
                names = self._key()
                self._expect("]]")
                index = self.array_counts.get(names, 0)
                self.array_counts[names] = index + 1
                table = self._array_table_path(names, index)
                self._record(table, start)
            elif self.text.startswith("[", self.pos):
                self.pos += 1
                start = self.pos
                names = self._key()
                self._expect("]")
                table = self._table_path(names)
                self._record(table, start)
            else:
                self._key_value(table)
        return self.positions

    # --- paths -------------------------------------------------------------------------------------------

    def _array_table_path(self, names: tuple[str, ...], index: int) -> KeyPath:
        return (*self._table_path(names[:-1]), names[-1], index) if len(names) > 1 else (names[0], index)

    def _table_path(self, names: tuple[str, ...]) -> KeyPath:
        """Insert the current index of every array of tables that the dotted name passes through."""
        out: list[str | int] = []
        for i, name in enumerate(names):
            out.append(name)
            prefix = names[: i + 1]
            if prefix in self.array_counts and i < len(names) - 1:
                out.append(self.array_counts[prefix] - 1)
        return tuple(out)

    # --- lexing ------------------------------------------------------------------------------------------

    def _record(self, key: KeyPath, offset: int) -> None:
        self.positions.setdefault(key, self._line_col(offset))

    def _line_col(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._line_starts[lo] + 1

    def _skip_blank_and_comments(self) -> bool:
        """Skip whitespace, newlines and comments; return False at end of input."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return True
        return False

    def _skip_inline_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def _expect(self, token: str) -> None:
        self._skip_inline_space()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_inline_space()
            ch = self.text[self.pos : self.pos + 1]
            if ch in ('"', "'"):
                parts.append(self._string())
            else:
                found = BARE_KEY.match(self.text, self.pos)
                if not found:
                    break
                parts.append(found.group())
                self.pos = found.end()
            self._skip_inline_space()
            if self.text.startswith(".", self.pos):
                self.pos += 1
                continue
            break
        return tuple(parts)

    def _key_value(self, table: KeyPath) -> None:
        start = self.pos
        names = self._key()
        key = (*table, *names)
        self._record(key, start)
        self._expect("=")
        self._skip_inline_space()
        self._value(key)

    def _value(self, key: KeyPath) -> None:
        ch = self.text[self.pos : self.pos + 1]
        if ch == "[":
            self.pos += 1
            index = 0
            while self._skip_blank_and_comments():
                if self.text[self.pos] == "]":
                    self.pos += 1
                    return
                if self.text[self.pos] == ",":
                    self.pos += 1
                    continue
                self._record((*key, index), self.pos)
                self._value((*key, index))
                index += 1
        elif ch == "{":
            self.pos += 1
            while self._skip_blank_and_comments():
                if self.text[self.pos] == "}":
                    self.pos += 1
                    return
                if self.text[self.pos] == ",":
                    self.pos += 1
                    continue
                self._key_value(key)
        elif ch in ('"', "'"):
            self._string()
        else:
            found = re.compile(r"[^,\]}\s#]+").match(self.text, self.pos)
            self.pos = found.end() if found else self.pos + 1
            # Dates with a space ("1979-05-27 07:32:00") are one value.
            more = re.compile(r" \d\d:\d\d[^,\]}\s#]*").match(self.text, self.pos)
            if more:
                self.pos = more.end()

    def _string(self) -> str:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, self.pos):
                end = text.find(quote, self.pos + 3)
                while quote == '"""' and end > 0 and escaped(text, end):
                    end = text.find(quote, end + 1)
                # A closing delimiter may be followed by one or two extra quotes that belong to the content.
                while text.startswith(quote[0], end + 3):
                    end += 1
                value = text[self.pos + 3 : end]
                self.pos = end + 3
                return value
        quote = text[self.pos]
        end = self.pos + 1
        while end < len(text) and text[end] != quote:
            end += 2 if quote == '"' and text[end] == "\\" else 1
        raw = text[self.pos + 1 : end]
        self.pos = end + 1
        if quote == '"':
            try:
                decoded: str = tomllib.loads(f"k = {text[self.pos - len(raw) - 2 : self.pos]}")["k"]
            except tomllib.TOMLDecodeError:
                return raw
            return decoded
        return raw
