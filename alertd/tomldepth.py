"""How deep a TOML source nests tables and arrays, measured before any parser recurses into it.

tomllib parses nested arrays recursively: a valid file nested 600 deep raises RecursionError, and a dotted key
of 20,000 parts costs minutes. :func:`measure_nesting` is one linear pass over the text that needs no valid
TOML, so the loader can refuse such a file at the exact place it goes too deep (:data:`MAX_NESTING`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_NESTING = 32
"""Levels of tables and arrays below the top-level table a config or watchlist may use (a watchlist needs 5)."""
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
BARE_VALUE = re.compile(r"[^\s,\]}#]+")


class Nesting(NamedTuple):
    """How deep a TOML source nests tables and arrays, and where it first goes beyond the limit."""

    deepest: int
    first_too_deep: int | None  # offset of the bracket, brace or key part that crossed the limit


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
        elif char in "\"'" or BARE_KEY.match(char):
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
                found = BARE_KEY.match(text, start)
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
            found = BARE_VALUE.match(self.text, self.pos)
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
                    if end < 0 or quote == "'''" or not escaped(text, end):
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


def escaped(text: str, index: int) -> bool:
    """Whether the character at ``index`` is preceded by an odd number of backslashes."""
    backslashes = 0
    while index - 1 - backslashes >= 0 and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
