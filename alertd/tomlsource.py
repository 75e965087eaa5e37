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
from typing import Any, NamedTuple

from alertd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

# Levels of tables and arrays below the top-level table. Real files use a handful (a watchlist term is 4 deep:
# topic array, topic table, any array, term table); 32 leaves room and keeps every recursive walk of the data,
# tomllib's included, a few hundred frames deep at most.
MAX_NESTING = 32

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
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


# --- nesting ---------------------------------------------------------------------------------------------


class Nesting(NamedTuple):
    """How deep a TOML source nests tables and arrays, and where it first goes beyond the limit."""

    deepest: int
    first_too_deep: int | None  # offset of the bracket, brace or key part that crossed the limit


def _refuse_deep_nesting(text: str, path: Path) -> None:
    nesting = measure_nesting(text)
    if nesting.first_too_deep is not None:
        line, col = _line_col(text, nesting.first_too_deep)
        message = (
            f"nested {nesting.deepest} deep; at most {MAX_NESTING} levels of tables and arrays are allowed"
        )
        raise ConfigError.single(path, message, line=line, col=col)


def measure_nesting(text: str, limit: int = MAX_NESTING) -> Nesting:
    """The nesting depth of the data ``text`` would parse to, in one pass that needs no valid TOML.

    Levels count below the top-level table: ``[a.b]`` is 2 deep, ``[[a]]`` 2 (the array and its table),
    ``x = [[1]]`` 2, ``a.b.c = 1`` 2 (the tables ``a`` and ``b``). Strings and comments are skipped, so
    brackets inside them do not count.
    """
    return _NestingScan(text, limit).scan()


class _NestingScan:
    """A TOML lexer reduced to what nests: table headers, dotted keys, arrays and inline tables."""

    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.limit = limit
        self.pos = 0
        self.deepest = 0
        self.first_too_deep: int | None = None
        self.open: list[tuple[str, int]] = []  # the arrays and inline tables open here, with their level
        self.table_level = 0  # level of the current [table]
        self.array_tables: set[tuple[str, ...]] = set()  # headers written [[...]]
        self.expect = "key"  # "key", "value" or "after" (a value was read)
        self.value_level = 0  # level a container opened as the next value would have

    def scan(self) -> Nesting:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "\n":
                self.pos += 1
                if not self.open:
                    self.expect = "key"
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif self.expect == "key":
                self._key_or_header(char)
            elif self.expect == "value":
                self._value(char)
            else:
                self._after_value(char)
        return Nesting(self.deepest, self.first_too_deep)

    def _reach(self, level: int, offset: int) -> None:
        self.deepest = max(self.deepest, level)
        if level > self.limit and self.first_too_deep is None:
            self.first_too_deep = offset

    def _container_level(self) -> int:
        return self.open[-1][1] if self.open else self.table_level

    def _key_or_header(self, char: str) -> None:
        if char == "}" and self.open:  # an empty inline table, or a trailing comma
            self._close()
        elif char == "[" and not self.open:
            self._header()
        elif char in "\"'" or _BARE_KEY.match(char):
            parts, offsets = self._dotted_key()
            base = self._container_level()
            for depth, offset in enumerate(offsets[:-1], start=1):  # each part but the last is a table
                self._reach(base + depth, offset)
            self.value_level = base + len(parts)
            if self.text.startswith("=", self.pos):
                self.pos += 1
            self.expect = "value"
        else:
            self.pos += 1  # not TOML: tomllib will say so

    def _header(self) -> None:
        array = self.text.startswith("[[", self.pos)
        self.pos += 2 if array else 1
        parts, offsets = self._dotted_key()
        level = 0
        for depth in range(1, len(parts) + 1):
            level += 1
            if tuple(parts[:depth]) in self.array_tables and depth < len(parts):
                level += 1  # [a.b] after [[a]] is inside a's last table
            self._reach(level, offsets[depth - 1])
        if array:
            self.array_tables.add(tuple(parts))
            level += 1
            self._reach(level, offsets[-1] if offsets else self.pos)
        self.table_level = level
        self.expect = "after"  # the rest of the line: "]" or "]]", then a comment at most

    def _dotted_key(self) -> tuple[list[str], list[int]]:
        """The parts of a (dotted) key at ``pos`` and where each starts; ``pos`` ends after the key."""
        parts: list[str] = []
        offsets: list[int] = []
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos] in " \t":
                self.pos += 1
            start = self.pos
            if text.startswith(('"', "'"), start):
                self._skip_string()
                quoted = text[start + 1 : self.pos - 1]
                parts.append(quoted if "\\" not in quoted else text[start : self.pos])
            else:
                found = _BARE_KEY.match(text, start)
                if found is None:
                    break
                parts.append(found.group())
                self.pos = found.end()
            offsets.append(start)
            while self.pos < len(text) and text[self.pos] in " \t":
                self.pos += 1
            if not text.startswith(".", self.pos):
                break
            self.pos += 1
        return parts, offsets

    def _value(self, char: str) -> None:
        if char in "[{":
            level = self.value_level
            self._reach(level, self.pos)
            self.open.append((char, level))
            self.pos += 1
            self.expect = "value" if char == "[" else "key"
            self.value_level = level + 1
        elif char in "]}":
            self._close()
        elif char in "\"'":
            self._skip_string()
            self.expect = "after"
        else:
            found = _BARE_VALUE.match(self.text, self.pos)
            self.pos = found.end() if found else self.pos + 1
            self.expect = "after"

    def _after_value(self, char: str) -> None:
        if char in "]}" and self.open:
            self._close()
            return
        self.pos += 1
        if char == "," and self.open:
            kind, level = self.open[-1]
            self.expect = "value" if kind == "[" else "key"
            self.value_level = level + 1

    def _close(self) -> None:
        self.pos += 1
        if self.open:
            self.open.pop()
        self.expect = "after"

    def _skip_string(self) -> None:
        """Move ``pos`` past the string that starts there (to the end of the line if it is not closed)."""
        text, start = self.text, self.pos
        for quote in ('"""', "'''"):
            if text.startswith(quote, start):
                end = start + 3
                while True:
                    end = text.find(quote, end)
                    if end < 0 or quote == "'''" or not _escaped(text, end):
                        break
                    end += 1
                if end < 0:
                    self.pos = len(text)
                    return
                end += 3
                for _ in range(2):  # a closing delimiter may be preceded by one or two quotes of content
                    if text.startswith(quote[0], end):
                        end += 1
                self.pos = end
                return
        quote = text[start]
        end = start + 1
        while end < len(text) and text[end] != quote and text[end] != "\n":
            end += 2 if quote == '"' and text[end] == "\\" else 1
        self.pos = min(end + 1, len(text)) if end < len(text) and text[end] == quote else end


_BARE_VALUE = re.compile(r"[^\s,\]}#]+")


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
                found = _BARE_KEY.match(self.text, self.pos)
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
                while quote == '"""' and end > 0 and _escaped(text, end):
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


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= 0 and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
